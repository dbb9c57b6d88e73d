package remote

import (
	"context"
	"errors"
)

// PrefetchIndexed fills an indexed path's blob in the local cache with
// every chunk, each verified against the signed index, and gives its
// large files files of their own, as reading every file through the
// mount would. Chunks already there (written by this or another process)
// are checked, not fetched. Paths without a usable chunk index give
// ErrNotIndexed.
func (s *Store) PrefetchIndexed(ctx context.Context, p *PathInfo) error {
	kl, err := s.listing(ctx, p, false)
	if err != nil && !errors.Is(err, errNeedNAR) {
		return err
	}
	if err != nil || kl.index() == nil {
		return ErrNotIndexed
	}
	r, err := s.openBlob(kl.v, p)
	if err != nil {
		return err
	}
	defer s.releaseBlob(r)
	return s.local.Fill(ctx, r, p.v, s.origin(p))
}
