package upstream

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/narfs/narfs/remote/backend"
	"github.com/narfs/narfs/remote/chunkindex"
	"github.com/narfs/narfs/remote/internal/trust"
	"github.com/narfs/narfs/remote/internal/tune"
	"github.com/narfs/narfs/remote/narinfo"
	"github.com/narfs/narfs/remote/stats"
)

// Index returns the path's verified chunk index, or nil (never an error)
// when it has none or it is not usable: the path is then read the stock
// way, as from any stock cache. An index is used only as a whole.
//
// Where the index is: layout 2 (chunkindex's doc) under its alias
// (chunkindex.AliasKey), in caches that keep aliases (c.aliases.on);
// layout 1 where the narinfo names it (NarfsIndex lines), the alias
// then being a copy fetched ahead.
func (c *Cache) Index(ctx context.Context, p *trust.Path) *trust.Listing {
	url, declared, legacy, err := chunkindex.Location(p.NarInfo)
	if !legacy && !c.aliases.on.Load() {
		return nil
	}
	if err == nil {
		var v *trust.Listing
		if v, err = c.fetchIndex(ctx, p, url, declared, legacy); err == nil {
			return v
		}
	}
	switch {
	case errors.Is(err, errNoIndex), errors.Is(err, errIndexPaused):
		c.log.Debug("no chunk index; the path is read the stock way", "path", p.StorePath.String(), "err", err)
	case errors.Is(err, backend.ErrNotFound) || errors.Is(err, chunkindex.ErrInvalid) || errors.Is(err, narinfo.ErrUntrusted):
		c.log.Warn("ignoring the path's chunk index; it is read the stock way", "path", p.StorePath.String(), "err", err)
	default:
		c.log.Warn("chunk index unavailable; the path is read the stock way", "path", p.StorePath.String(), "err", err)
	}
	return nil
}

// errNoIndex: a cache that keeps aliases has none for the path (a path
// Nix itself copied there): not indexed, not an error.
var errNoIndex = errors.New("the cache has no index of the path")

// errIndexPaused: an index request outwaited its share of a lookup
// recently; indexes are not asked for until indexPause has passed.
var errIndexPaused = errors.New("index requests paused after one timed out")

// indexContext bounds an index fetch by its share of ctx's deadline.
func indexContext(ctx context.Context) (context.Context, context.CancelFunc) {
	d, ok := ctx.Deadline()
	if !ok {
		return context.WithCancel(ctx)
	}
	share := time.Until(d) * tune.IndexShareNum / tune.IndexShareDen
	return context.WithTimeout(ctx, max(share, 0))
}

// IndexesDeclared reports whether the cache says it keeps a chunk index
// of its paths under their alias names (nix-cache-info's
// NarfsIndexAliases line, or a narinfo that named an index).
func (c *Cache) IndexesDeclared() bool { return c.aliases.on.Load() }

// IndexRecorded reports whether the chunk index of the path with hash
// part hash verified in this cache recently, or was kept beside the
// path's records after it verified (in this run or an earlier one).
func (c *Cache) IndexRecorded(hash string) bool {
	if c.verifiedIndexes.Contains(hash) {
		return true
	}
	// Written only after an index was accepted.
	_, _, err := c.records.GetRecord(c.recordNS, hash+".nidx")
	return err == nil
}

// IndexFailure is why the index of the path with hash part hash failed
// recently, or nil: it is not asked for again until the memo expires.
func (c *Cache) IndexFailure(hash string) error { return c.indexFailed.Get(hash) }

func (c *Cache) fetchIndex(ctx context.Context, p *trust.Path, url string, declared int64, legacy bool) (*trust.Listing, error) {
	hash := p.StorePath.Hash
	// An index read before (kept beside the blob's entry) is checked again
	// like a downloaded one, against the narinfo of now.
	if rec, _, err := c.records.GetRecord(c.recordNS, hash+".nidx"); err == nil {
		if kl, err := c.AcceptIndex(ctx, p, rec); err == nil {
			return kl, nil
		}
	}
	if err := c.indexFailed.Get(hash); err != nil {
		return nil, fmt.Errorf("index of %s (failed recently): %w", p.StorePath, err)
	}
	if !legacy && time.Now().UnixNano() < c.aliases.slowUntil.Load() {
		return nil, errIndexPaused
	}
	// Only a share of the lookup's deadline: a cache that hangs on index
	// keys must leave the stock way time to answer.
	ictx, cancel := indexContext(ctx)
	defer cancel()
	bound := chunkindex.ObjectBound(p.NarInfo.NarSize)
	object, aliasErr, asked := c.takeIndexAlias(ictx, hash, !legacy)
	if object != nil {
		kl, err := c.AcceptIndex(ictx, p, object)
		if err == nil {
			c.RecordIndex(p, object)
			return kl, nil
		}
		if !legacy {
			return nil, c.indexFailure(p, chunkindex.AliasKey(hash), err)
		}
		// Stale (the path was indexed anew since) or foreign: not an
		// error of the path's own index, which is fetched next.
		c.log.Debug("index alias not usable; fetching the narinfo's", "path", p.StorePath.String(), "err", err)
	}
	key, limit := chunkindex.AliasKey(hash), bound
	if legacy {
		key, limit = url, min(declared, bound)
	} else if asked {
		switch {
		case errors.Is(aliasErr, backend.ErrNotFound):
			return nil, errNoIndex
		case !errors.Is(aliasErr, backend.ErrTooLarge) || bound <= tune.AliasMaxObject:
			// Not delivered in time, or failed: asking again would
			// only wait once more.
			return nil, c.indexFailure(p, key, aliasErr)
		}
	}
	object, err := c.readIndexObject(ictx, key, limit)
	if errors.Is(err, backend.ErrNotFound) && !legacy {
		return nil, errNoIndex
	}
	if err != nil {
		return nil, c.indexFailure(p, key, err)
	}
	kl, err := c.AcceptIndex(ictx, p, object)
	if err != nil {
		return nil, c.indexFailure(p, key, err)
	}
	c.RecordIndex(p, object)
	return kl, nil
}

// indexFailure remembers a failed index of p and says what failed. One
// that timed out also pauses index requests for every path a while: a
// cache hanging on index keys costs one share of a lookup's deadline a
// minute, not one per lookup.
func (c *Cache) indexFailure(p *trust.Path, key string, err error) error {
	err = fmt.Errorf("index %s: %w", key, err)
	switch {
	case errors.Is(err, chunkindex.ErrInvalid), errors.Is(err, narinfo.ErrUntrusted):
		c.indexFailed.Add(p.StorePath.Hash, err, tune.CorruptMemo, tune.CorruptMemo)
	default:
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, errAliasSlow) {
			c.aliases.slowUntil.Store(time.Now().Add(tune.AliasSlowPause).UnixNano())
		}
		c.indexFailed.Add(p.StorePath.Hash, err, tune.IndexMemoMin, tune.IndexMemoMax)
	}
	return err
}

// readIndexObject downloads an index object of at most limit bytes,
// holding that much of the listing budget (c.decoding) while it does:
// index bytes count in the same budget as listings. One that could not
// fit a quarter of it (acceptIndex) is not downloaded.
func (c *Cache) readIndexObject(ctx context.Context, key string, limit int64) ([]byte, error) {
	if quarter := c.o.ListingMemory / tune.ListingShare; limit > quarter {
		limit = quarter
	}
	if limit <= 0 {
		return nil, fmt.Errorf("%w: no index fits", chunkindex.ErrInvalid)
	}
	if err := c.decoding.Acquire(ctx, limit); err != nil {
		return nil, err
	}
	defer c.decoding.Release(limit)
	object, err := backend.ReadAll(ctx, c.counted.For(stats.KindIndex), key, limit)
	if errors.Is(err, backend.ErrTooLarge) {
		err = fmt.Errorf("%w: %w (more than a path of this NarSize can need)", chunkindex.ErrInvalid, err)
	}
	return object, err
}

// RecordIndex keeps an accepted index object beside the path's records,
// for restarts without the cache.
func (c *Cache) RecordIndex(p *trust.Path, object []byte) {
	if err := c.records.PutRecord(c.recordNS, p.StorePath.Hash+".nidx", object); err != nil {
		c.log.Warn("recording chunk index locally", "path", p.StorePath.String(), "err", err)
	}
}

// AcceptIndex checks an index object: its size against what the path
// can need, then a signature by a trusted key over it (in every mode:
// trust in an index comes from nothing else; --require-sigs=false and
// trusted=1 trust narinfos, not indexes), before decoding anything; then
// that it holds together and describes this narinfo's NAR and object.
func (c *Cache) AcceptIndex(ctx context.Context, p *trust.Path, object []byte) (*trust.Listing, error) {
	v, err := trust.VerifyIndex(ctx, p, object, c.o.Keys, c.decoding, c.o.ListingMemory)
	if err != nil {
		return nil, err
	}
	c.verifiedIndexes.Add(p.StorePath.Hash, struct{}{})
	return v, nil
}
