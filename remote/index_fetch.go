package remote

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/narfs/narfs/remote/backend"
	"github.com/narfs/narfs/remote/chunkindex"
	"github.com/narfs/narfs/remote/internal/trust"
	"github.com/narfs/narfs/remote/internal/tune"
)

// index returns the path's verified chunk index, or nil (never an error)
// when it has none or it is not usable: the path is then read the stock
// way, as from any stock cache. An index is used only as a whole.
//
// Where the index is: layout 2 (chunkindex's doc) under its alias
// (chunkindex.AliasKey), in caches that keep aliases (s.aliases.on);
// layout 1 where the narinfo names it (NarfsIndex lines), the alias
// then being a copy fetched ahead.
func (s *Store) index(ctx context.Context, p *PathInfo) *trust.Listing {
	url, declared, legacy, err := chunkindex.Location(p.NarInfo)
	if !legacy && !s.aliases.on.Load() {
		return nil
	}
	if err == nil {
		var v *trust.Listing
		if v, err = s.fetchIndex(ctx, p, url, declared, legacy); err == nil {
			return v
		}
	}
	switch {
	case errors.Is(err, errNoIndex), errors.Is(err, errIndexPaused):
		s.log.Debug("no chunk index; the path is read the stock way", "path", p.Path.String(), "err", err)
	case errors.Is(err, ErrNotFound) || errors.Is(err, chunkindex.ErrInvalid) || errors.Is(err, ErrUntrusted):
		s.log.Warn("ignoring the path's chunk index; it is read the stock way", "path", p.Path.String(), "err", err)
	default:
		s.log.Warn("chunk index unavailable; the path is read the stock way", "path", p.Path.String(), "err", err)
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
func (s *Store) IndexesDeclared() bool { return s.aliases.on.Load() }

// IndexVerified reports whether the path's chunk index verified in this
// Store, now or earlier (a listing held, or the index kept beside the
// path's records from an earlier run and still verifying).
func (s *Store) IndexVerified(p *PathInfo) bool {
	if kl, ok := s.listings.get(p.Path.Hash); ok && kl.index() != nil {
		return true
	}
	if s.verifiedIndexes.Contains(p.Path.Hash) {
		return true
	}
	// Written only after an index was accepted.
	_, _, err := s.cache.GetRecord(s.recordNS, p.Path.Hash+".nidx")
	return err == nil
}

func (s *Store) fetchIndex(ctx context.Context, p *PathInfo, url string, declared int64, legacy bool) (*trust.Listing, error) {
	hash := p.Path.Hash
	// An index read before (kept beside the blob's entry) is checked again
	// like a downloaded one, against the narinfo of now.
	if rec, _, err := s.cache.GetRecord(s.recordNS, hash+".nidx"); err == nil {
		if kl, err := s.acceptIndex(ctx, p, rec); err == nil {
			return kl, nil
		}
	}
	if err := s.failed.Get("index/" + hash); err != nil {
		return nil, fmt.Errorf("index of %s (failed recently): %w", p.Path, err)
	}
	if !legacy && time.Now().UnixNano() < s.aliases.slowUntil.Load() {
		return nil, errIndexPaused
	}
	// Only a share of the lookup's deadline: a cache that hangs on index
	// keys must leave the stock way time to answer.
	ictx, cancel := indexContext(ctx)
	defer cancel()
	bound := chunkindex.ObjectBound(p.NarInfo.NarSize)
	object, aliasErr, asked := s.takeIndexAlias(ictx, hash, !legacy)
	if object != nil {
		kl, err := s.acceptIndex(ictx, p, object)
		if err == nil {
			s.recordIndex(p, object)
			return kl, nil
		}
		if !legacy {
			return nil, s.indexFailed(p, chunkindex.AliasKey(hash), err)
		}
		// Stale (the path was indexed anew since) or foreign: not an
		// error of the path's own index, which is fetched next.
		s.log.Debug("index alias not usable; fetching the narinfo's", "path", p.Path.String(), "err", err)
	}
	key, limit := chunkindex.AliasKey(hash), bound
	if legacy {
		key, limit = url, min(declared, bound)
	} else if asked {
		switch {
		case errors.Is(aliasErr, ErrNotFound):
			return nil, errNoIndex
		case !errors.Is(aliasErr, backend.ErrTooLarge) || bound <= tune.AliasMaxObject:
			// Not delivered in time, or failed: asking again would
			// only wait once more.
			return nil, s.indexFailed(p, key, aliasErr)
		}
	}
	object, err := s.readIndexObject(ictx, key, limit)
	if errors.Is(err, ErrNotFound) && !legacy {
		return nil, errNoIndex
	}
	if err != nil {
		return nil, s.indexFailed(p, key, err)
	}
	kl, err := s.acceptIndex(ictx, p, object)
	if err != nil {
		return nil, s.indexFailed(p, key, err)
	}
	s.recordIndex(p, object)
	return kl, nil
}

// indexFailed remembers a failed index of p and says what failed. One
// that timed out also pauses index requests for every path a while: a
// cache hanging on index keys costs one share of a lookup's deadline a
// minute, not one per lookup.
func (s *Store) indexFailed(p *PathInfo, key string, err error) error {
	err = fmt.Errorf("index %s: %w", key, err)
	switch {
	case errors.Is(err, chunkindex.ErrInvalid), errors.Is(err, ErrUntrusted):
		s.failed.Add("index/"+p.Path.Hash, err, tune.CorruptMemo, tune.CorruptMemo)
	default:
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, errAliasSlow) {
			s.aliases.slowUntil.Store(time.Now().Add(tune.AliasSlowPause).UnixNano())
		}
		s.failed.Add("index/"+p.Path.Hash, err, tune.IndexMemoMin, tune.IndexMemoMax)
	}
	return err
}

// readIndexObject downloads an index object of at most limit bytes,
// holding that much of the listing budget (s.decoding) while it does:
// index bytes count in the same budget as listings. One that could not
// fit a quarter of it (acceptIndex) is not downloaded.
func (s *Store) readIndexObject(ctx context.Context, key string, limit int64) ([]byte, error) {
	if quarter := s.cfg.ListingMemory / tune.ListingShare; limit > quarter {
		limit = quarter
	}
	if limit <= 0 {
		return nil, fmt.Errorf("%w: no index fits", chunkindex.ErrInvalid)
	}
	if err := s.decoding.Acquire(ctx, limit); err != nil {
		return nil, err
	}
	defer s.decoding.Release(limit)
	object, err := backend.ReadAll(ctx, s.be, key, limit)
	if errors.Is(err, backend.ErrTooLarge) {
		err = fmt.Errorf("%w: %w (more than a path of this NarSize can need)", chunkindex.ErrInvalid, err)
	}
	return object, err
}

// recordIndex keeps an accepted index object beside the path's records,
// for restarts without the cache.
func (s *Store) recordIndex(p *PathInfo, object []byte) {
	if err := s.cache.PutRecord(s.recordNS, p.Path.Hash+".nidx", object); err != nil {
		s.log.Warn("recording chunk index locally", "path", p.Path.String(), "err", err)
	}
}

// acceptIndex checks an index object: its size against what the path
// can need, then a signature by a trusted key over it (in every mode:
// trust in an index comes from nothing else; --require-sigs=false and
// trusted=1 trust narinfos, not indexes), before decoding anything; then
// that it holds together and describes this narinfo's NAR and object.
func (s *Store) acceptIndex(ctx context.Context, p *PathInfo, object []byte) (*trust.Listing, error) {
	v, err := trust.VerifyIndex(ctx, p.v, object, s.cfg.TrustedKeys, s.decoding, s.cfg.ListingMemory)
	if err != nil {
		return nil, err
	}
	s.verifiedIndexes.Add(p.Path.Hash, struct{}{})
	return v, nil
}
