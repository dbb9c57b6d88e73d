package remote

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/narfs/narfs/remote/internal/tune"
	"github.com/narfs/narfs/remote/storepath"
)

// lookahead queues background lookups of p's references: their narinfos
// and listings (a .ls or a chunk index; never a NAR), and, as each
// resolves, of its own references, so that a walk of a closure finds every
// narinfo in memory instead of paying one round trip per path. Each hash
// is looked up at most once per Store; failures are only logged at debug
// level and misses land in the negative cache like any lookup's.
func (s *Store) lookahead(p *PathInfo) {
	if s.cfg.NoReferenceLookahead {
		return
	}
	// Of several substituters, the first is asked first, as a reader's
	// lookup would; a miss passes the reference down the order.
	q := s
	if s.group != nil {
		q = s.group.caches[0]
	}
	for _, ref := range p.NarInfo.References {
		if ref == p.Path {
			continue
		}
		q.lookq.Add(ref.Hash, func(ctx context.Context) { q.lookAt(ctx, ref) })
	}
}

// lookNext passes a reference's lookahead to the next substituter.
func (s *Store) lookNext(ref storepath.StorePath) {
	if n := s.group.next(s); n != nil {
		n.lookq.Add(ref.Hash, func(ctx context.Context) { n.lookAt(ctx, ref) })
	}
}

// lookAt is one lookahead job.
func (s *Store) lookAt(ctx context.Context, ref storepath.StorePath) {
	if err := s.lookaheadPaused.Get(""); err != nil {
		// Skipped, not done: a later resolution may queue it again.
		s.lookq.Forget(ref.Hash)
		return
	}
	if s.skipping() != nil {
		s.lookq.Forget(ref.Hash)
		s.lookNext(ref)
		return
	}
	// Wait for the shared lookups to end rather than for ctx: Close
	// cancels them, and waits for this job, so nothing is asked of the
	// cache once it returned.
	ctx = context.WithoutCancel(ctx)
	pi, err := s.info(ctx, ref.Hash)
	if err == nil && pi.Path != ref {
		err = fmt.Errorf("%s: %w", ref, ErrNotFound) // Resolve would refuse it
	}
	if isAnswer(err) {
		s.lookNext(ref)
	}
	if err == nil {
		s.lookahead(pi)
		if _, err = s.listing(ctx, pi, false); errors.Is(err, errNeedNAR) {
			err = nil
		}
	}
	s.lookaheadDone(ref, err)
}

// lookaheadDone judges a lookahead's outcome: answers of the cache (a
// miss, an untrusted or corrupt narinfo) are its negative cache's
// business; anything else pauses the lookahead.
func (s *Store) lookaheadDone(ref storepath.StorePath, err error) {
	switch {
	case err == nil, s.bg.Err() != nil:
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrUntrusted), errors.Is(err, ErrCorrupt):
		s.log.Debug("lookahead: reference not usable", "path", ref.String(), "err", err)
	default:
		s.lookaheadPaused.Add("", err, tune.LookaheadPauseMin, tune.LookaheadPauseMax)
		s.log.Debug("lookahead failed; pausing it", "path", ref.String(), "err", err)
	}
}

// prefetchReferences queues background fetches of p's references' data
// (and so, transitively, of its closure) when Config.PrefetchReferences is
// set; at most PrefetchJobs run at once. Each path is tried at most once
// per Store; failures are only logged: a reader that needs the path later
// gets the error itself.
func (s *Store) prefetchReferences(p *PathInfo) {
	if !s.cfg.PrefetchReferences {
		return
	}
	for _, ref := range p.NarInfo.References {
		if ref == p.Path {
			continue
		}
		s.prefetchq.Add(ref.Hash, func(ctx context.Context) {
			// Of several substituters, the one a reader would get.
			var info *PathInfo
			var err error
			if s.group != nil {
				info, err = s.group.Resolve(ctx, ref.String())
			} else {
				info, err = s.Resolve(ctx, ref.String())
			}
			if err == nil {
				var indexed bool
				if indexed, err = info.src.prefetch(ctx, info); err == nil && indexed {
					// Whole NARs queue their references as their fetch starts;
					// indexed paths do it here.
					info.src.prefetchReferences(info)
				}
			}
			if err != nil && !errors.Is(err, ErrNotFound) && s.bg.Err() == nil {
				s.log.Debug("prefetch failed", "path", ref.String(), "err", err)
			}
		})
	}
}

// Prefetch makes sure a store path's data is in the local cache, verified,
// so that later reads (by this process or another sharing the cache dir)
// ask the cache for nothing but, at most, its narinfo: an indexed path's
// blob gets every chunk (PrefetchIndexed), any other path its NAR
// (Materialize). It reports whether the path is indexed.
func (s *Store) Prefetch(ctx context.Context, p *PathInfo) (indexed bool, err error) {
	return s.prefetch(ctx, p)
}

func (s *Store) prefetch(ctx context.Context, p *PathInfo) (bool, error) {
	err := s.PrefetchIndexed(ctx, p)
	if !errors.Is(err, ErrNotIndexed) {
		return true, err
	}
	return false, s.prefetchNAR(ctx, p)
}

// prefetchNAR is Materialize waiting as long as the download may take,
// not just Config.Timeout: a prefetch has no reader to answer.
func (s *Store) prefetchNAR(ctx context.Context, p *PathInfo) error {
	if d := s.fetchDeadline(p.NarInfo.NarSize); d < math.MaxInt64-s.cfg.Timeout {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d+s.cfg.Timeout)
		defer cancel()
	}
	e, err := s.entry(ctx, p)
	if err != nil {
		return err
	}
	e.Release()
	return nil
}
