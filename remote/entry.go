package remote

import (
	"context"
	"errors"
	"fmt"

	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/remote/internal/content"
	"github.com/narfs/narfs/remote/internal/layout"
	"github.com/narfs/narfs/remote/internal/trust"
	"github.com/narfs/narfs/remote/localcache"
)

// entry returns the store path's verified local cache entry, pinned,
// fetching the NAR first if needed. Concurrent callers for the same
// content share one download (whichever cache they reach it through); a
// caller giving up does not cancel it.
func (c *cache) entry(ctx context.Context, p *PathInfo) (*localcache.Entry, error) {
	key := trust.EntryKey(p.v)
	return c.local.Entry(ctx, content.Fetch{
		Key:      key,
		Failed:   c.failedKey(p),
		What:     fmt.Sprintf("%s: NAR %s of %s", c.url, p.NarInfo.URL, p.Path),
		Path:     p.Path.String(),
		Log:      c.log,
		Counters: counters{c.up.Counters()},
		Run: func() (*localcache.Entry, error) {
			// The references' fetches start with this one, not after it:
			// a walk of the closure then finds them fetched, or under way.
			c.ahead.prefetchReferences(p)
			return c.fetch(context.WithoutCancel(ctx), p, key)
		},
	})
}

// openVerified opens a regular file of a store path ("" for a path that
// is a single file) from the local cache, fetching the NAR first if
// needed, with the file's node in the verified listing. Which file is opened is decided by the listing built
// from the verified NAR of this very path, never by a .ls, and the open
// cannot follow a symlink or leave the entry.
func (c *cache) openVerified(ctx context.Context, p *PathInfo, sub string) (*content.Span, *nar.Node, error) {
	if f, n, ok := c.openWarm(p, sub); ok {
		return f, n, nil
	}
	drops := c.disk.Drops() // before the entry is found: see content.Store.Share
	ctx, cancel := c.opContext(ctx)
	defer cancel()
	for attempt := 0; ; attempt++ {
		e, err := c.entry(ctx, p)
		if errors.Is(err, localcache.ErrMiss) && attempt < 2 {
			// Evicted by another process sharing the cache dir in the
			// instant after it was committed: fetch it again.
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		f, n, err := c.openIn(p, e, sub)
		if err == nil && !f.Own() {
			f = c.local.Share(e.Key(), f, drops)
		}
		e.Release()
		if errors.Is(err, content.ErrOwnMismatch) || errors.Is(err, content.ErrOwnUnrecorded) {
			// Never served: the entry goes (unless someone still reads
			// it) and the NAR is fetched and verified again.
			c.up.Counters().Corrupt.Add(1)
			c.log.Error("a large file's copy in the local cache does not match what was verified; not served, fetching the NAR again", "path", p.Path.String(), "file", sub, "cache-dir", c.cfg.CacheDir, "err", err)
			if c.disk.Discard(e.Key()) && attempt < 2 {
				c.listings.Remove(p.Path.Hash)
				continue
			}
			return nil, nil, err
		}
		if !errors.Is(err, localcache.ErrMiss) || attempt >= 2 {
			return f, n, err
		}
		// Files deleted from under us (by hand): fetch the entry again.
		c.disk.Forget(e.Key())
		c.listings.Remove(p.Path.Hash)
	}
}

func (c *cache) openIn(p *PathInfo, e *localcache.Entry, sub string) (*content.Span, *nar.Node, error) {
	l, err := c.entryListing(p, e)
	if err != nil {
		return nil, nil, err
	}
	n, err := l.Tree().Find(sub)
	if err != nil {
		return nil, nil, fmt.Errorf("%s/%s: %w (%v)", p.Path, sub, ErrNotFound, err)
	}
	if n.Type != nar.TypeRegular {
		return nil, nil, fmt.Errorf("%s/%s: %w (a %s, not a regular file)", p.Path, sub, ErrNotFound, n.Type)
	}
	f, err := c.local.OpenSpan(e, n, p.NarInfo.NarSize, p.Path.String()+"/"+sub)
	if err != nil {
		return nil, nil, err
	}
	return f, n, nil
}

// openWarm opens a small file of a path whose verified listing is known
// and whose blob is open already (content's warm descriptors); ok false
// when the slow path must run.
func (c *cache) openWarm(p *PathInfo, sub string) (*content.Span, *nar.Node, bool) {
	kl, ok := known(c.listings, p.Path.Hash)
	if !ok || !kl.verified() || kl.index() != nil {
		return nil, nil, false
	}
	n, err := kl.Find(sub)
	if err != nil {
		return nil, nil, false
	}
	f, ok := c.local.Warm(trust.EntryKey(p.v), n)
	if !ok {
		return nil, nil, false
	}
	return f, n, true
}

// entryListing is the verified listing of an entry: from memory, else
// from the file written beside it when the NAR was verified.
func (c *cache) entryListing(p *PathInfo, e *localcache.Entry) (*trust.Listing, error) {
	if kl, ok := known(c.listings, p.Path.Hash); ok && kl.verified() {
		return kl.v, nil
	}
	data, err := e.ReadMeta(layout.ListingMeta)
	if err != nil {
		return nil, fmt.Errorf("%s: verified listing: %w", p.Path, err)
	}
	l, err := trust.Recorded(data)
	if err != nil {
		return nil, fmt.Errorf("%s: verified listing: %w: %v", p.Path, localcache.ErrLocal, err)
	}
	// The entry may have been fetched for another path with the same
	// contents, or before a restart: this path's answers switch to it now.
	c.verified(p, l)
	return l, nil
}
