package remote

import (
	"context"
	"errors"
)

// prefetchIndexed fills an indexed path's blob in the local cache with
// every chunk, each verified against the signed index, and gives its
// large files files of their own, as reading every file through the
// mount would. Chunks already there (written by this or another process)
// are checked, not fetched. Paths without a usable chunk index give
// errNotIndexed.
func (c *cache) prefetchIndexed(ctx context.Context, p *PathInfo) error {
	kl, err := c.listing(ctx, p, false)
	if err != nil && !errors.Is(err, errNeedNAR) {
		return err
	}
	if err != nil || kl.index() == nil {
		return errNotIndexed
	}
	r, err := c.local.OpenBlob(kl.v, p.v, c.origin(p))
	if err != nil {
		return err
	}
	defer c.local.ReleaseBlob(r)
	return c.local.Fill(ctx, r, p.v, c.origin(p))
}
