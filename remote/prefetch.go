package remote

import (
	"errors"
)

// prefetchReferences starts background fetches of p's references (and so,
// transitively, of its closure) when Config.PrefetchReferences is set.
// Each path is tried at most once per Store; failures are only logged:
// a reader that needs the path later gets the error itself.
func (s *Store) prefetchReferences(p *PathInfo) {
	if !s.cfg.PrefetchReferences {
		return
	}
	for _, ref := range p.NarInfo.References {
		if ref == p.Path {
			continue
		}
		if _, loaded := s.prefetched.LoadOrStore(ref.Hash, struct{}{}); loaded {
			continue
		}
		go func() {
			select {
			case s.prefetchSem <- struct{}{}:
			case <-s.bg.Done():
				return
			}
			defer func() { <-s.prefetchSem }()
			ctx := s.bg
			defer recoverBug(s.log, "prefetch "+ref.String(), new(error))
			info, err := s.Resolve(ctx, ref.String())
			if err == nil {
				_, err = s.Materialize(ctx, info)
			}
			if err != nil && !errors.Is(err, ErrNotFound) {
				s.log.Debug("prefetch failed", "path", ref.String(), "err", err)
			}
		}()
	}
}
