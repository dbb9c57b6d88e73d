package remote

import (
	"context"
	"errors"
	"fmt"

	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/remote/chunkindex"
	"github.com/narfs/narfs/remote/internal/flight"
	"github.com/narfs/narfs/remote/internal/pathstate"
	"github.com/narfs/narfs/remote/internal/trust"
)

// verifiedListing returns the listing built from the store path's
// verified NAR, fetching it if needed.
func (c *cache) verifiedListing(ctx context.Context, p *PathInfo) (*trust.Listing, error) {
	if kl, ok := known(c.listings, p.Path.Hash); ok && kl.verified() {
		return kl.v, nil
	}
	ctx, cancel := c.opContext(ctx)
	defer cancel()
	e, err := c.entry(ctx, p)
	if err != nil {
		return nil, err
	}
	defer e.Release()
	return c.entryListing(p, e)
}

// localListing is the verified listing of a path whose NAR is in the
// local cache, or nil.
func (c *cache) localListing(p *PathInfo) *trust.Listing {
	e, err := c.disk.Acquire(trust.EntryKey(p.v))
	if err != nil {
		return nil
	}
	defer e.Release()
	l, err := c.entryListing(p, e)
	if err != nil {
		c.log.Warn("local listing unreadable", "path", p.Path.String(), "err", err)
		return nil
	}
	return l
}

// errNeedNAR: no listing short of fetching the NAR.
var errNeedNAR = errors.New("no listing without the NAR")

// listing returns the best known tree of a store path: the verified one
// when its NAR has been fetched (or its chunk index verified), else the
// cache's <hash>.ls (no NAR bytes), else the NAR is fetched — or, without
// fetchNAR, it stops there with errNeedNAR. A .ls only ever supplies
// metadata; which bytes a reader gets is decided by the verified listing
// alone (openVerified).
func (c *cache) listing(ctx context.Context, p *PathInfo, fetchNAR bool) (*knownListing, error) {
	if kl, ok := known(c.listings, p.Path.Hash); ok {
		return kl, nil
	}
	ctx, cancel := c.opContext(ctx)
	defer cancel()
	// Two flights: every caller shares the one that asks for metadata
	// only (a lookahead's, a reader's), and readers who need more share
	// the NAR's after it.
	kl, err := c.sharedListing(ctx, p, p.Path.Hash+"/no-nar", func(ctx context.Context) (*knownListing, error) {
		if v := c.localListing(p); v != nil {
			return knownVerified(v), nil
		}
		if v := c.up.Index(ctx, p.v); v != nil {
			c.verified(p, v)
			return knownVerified(v), nil
		}
		err := errListingsOff
		if c.unsignedMetadataOK(p) {
			var l *nar.Listing
			var cost int64
			if l, cost, err = c.up.Listing(ctx, p.v); err == nil {
				c.listings.SetUnverified(p.Path.Hash, l, cost)
				return &knownListing{Listing: l, cost: cost}, nil
			}
		}
		if !errors.Is(err, ErrNotFound) && err != errListingsOff {
			// A broken .ls is the cache's problem, not the reader's: the NAR
			// is the authority, so fall back to it.
			c.log.Warn("ignoring unusable .ls listing", "path", p.Path.String(), "err", err)
		}
		return nil, errNeedNAR
	})
	if !fetchNAR || !errors.Is(err, errNeedNAR) {
		return kl, err
	}
	return c.sharedListing(ctx, p, p.Path.Hash, func(ctx context.Context) (*knownListing, error) {
		v, err := c.verifiedListing(ctx, p)
		if err != nil {
			return nil, err
		}
		return knownVerified(v), nil
	})
}

// sharedListing runs get in the flight key, unless the listing became
// known meanwhile (a flight that ended between the caller's check and
// this one has filled the table).
func (c *cache) sharedListing(ctx context.Context, p *PathInfo, key string, get func(context.Context) (*knownListing, error)) (*knownListing, error) {
	v, err := flight.Shared(ctx, c.log, &c.listingGroup, key, fmt.Sprintf("%s: listing of %s", c.url, p.Path), func() (any, error) {
		if kl, ok := known(c.listings, p.Path.Hash); ok {
			return kl, nil
		}
		ctx, cancel := c.flightContext(ctx)
		defer cancel()
		return get(ctx)
	})
	if err != nil {
		return nil, err
	}
	return v.(*knownListing), nil
}

// errListingsOff: Config.VerifiedMetadataOnly, or an indexed cache
// (unsignedMetadataOK); the NAR is the only source.
var errListingsOff = errors.New(".ls listings not used")

// lookup finds a node by slash-separated sub-path inside a store path.
func (c *cache) lookup(ctx context.Context, p *PathInfo, sub string) (*nar.Node, error) {
	kl, err := c.listing(ctx, p, true)
	if err != nil {
		return nil, err
	}
	if !kl.verified() {
		// Unverified metadata handed out: the verification that follows
		// tells (Core.Subscribe) if it contradicts it.
		c.listings.Handed(p.Path.Hash, kl.Root, kl.Listing)
	}
	n, err := kl.Find(sub)
	if err != nil {
		// Missing names and paths through files are both "no such file".
		return nil, fmt.Errorf("%s/%s: %w (%v)", p.Path, sub, ErrNotFound, err)
	}
	return n, nil
}

// verified makes the NAR's listing the only answer for the path from now
// on; a contradiction of what was handed out moves the path's generation,
// and subscribers (the mount) drop what the kernel cached of any other
// answer. Metadata from the unsigned .ls (or the NAR's first header) may
// already have been handed out; if it disagrees, the .ls lied.
// The listing may carry the path's chunk index (it came from one).
func (c *cache) verified(p *PathInfo, v *trust.Listing) {
	l := v.Tree()
	keep := false
	if st, ok := c.listings.Get(p.Path.Hash); ok && st.Verified != nil {
		// The NAR was fetched whole as well: keep reading by chunks.
		keep = st.Verified.Index() != nil && v.Index() == nil && nar.SameTree(st.Verified.Tree().Root, l.Root)
	}
	if !keep {
		if _, contradicted := c.listings.SetVerified(p.Path.Hash, v); contradicted {
			c.up.Counters().Corrupt.Add(1)
			c.log.Error("the cache's .ls listing disagrees with the verified NAR; the NAR's listing is used from now on", "path", p.Path.String())
		}
	}
}

// knownListing is a store path's listing with where it came from.
type knownListing struct {
	*nar.Listing
	// v, when set, is the verified listing (Listing is its tree): built
	// from the NAR after NarHash matched, or from a verified chunk index.
	// Otherwise the listing came from the unsigned .ls (or a NAR header)
	// and only describes metadata; no byte a reader gets is chosen by it.
	v    *trust.Listing
	cost int64
}

// knownVerified wraps a verified listing.
func knownVerified(v *trust.Listing) *knownListing {
	return &knownListing{Listing: v.Tree(), v: v, cost: v.Cost()}
}

func (kl *knownListing) verified() bool { return kl.v != nil }

// index is the path's verified chunk index, or nil.
func (kl *knownListing) index() *chunkindex.Index { return kl.v.Index() }

// indexObject is the object the index was decoded from.
func (kl *knownListing) indexObject() []byte { return kl.v.Object() }

// known is the best listing t holds of hash: the verified one,
// else the unverified .ls, else a lone file's peeked root.
func known(t *pathstate.Table, hash string) (*knownListing, bool) {
	st, ok := t.Get(hash)
	if !ok {
		return nil, false
	}
	switch {
	case st.Verified != nil:
		return knownVerified(st.Verified), true
	case st.Unverified != nil:
		return &knownListing{Listing: st.Unverified}, true
	case st.Peeked != nil && st.Peeked.Type == nar.TypeRegular:
		// A lone file: the header is the whole listing.
		return &knownListing{Listing: &nar.Listing{Root: st.Peeked}}, true
	}
	return nil, false
}
