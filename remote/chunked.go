package remote

import (
	"context"
	"errors"
	"fmt"

	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/remote/internal/content"
	"github.com/narfs/narfs/remote/internal/tune"
)

// errNotIndexed: the path has no valid chunk index; read it whole.
var errNotIndexed = errors.New("no valid chunk index")

// DefaultIndexedWholeMax is Config.IndexedWholeMax's default (see
// tune.DefaultIndexedWholeMax for why).
const DefaultIndexedWholeMax = tune.DefaultIndexedWholeMax

// openChunked opens a regular file of a path that has a valid chunk
// index, without fetching anything but the index. Paths without one give
// errNotIndexed: use openVerified.
func (c *cache) openChunked(ctx context.Context, p *PathInfo, sub string) (*content.Chunked, error) {
	// listing bounds its own wait (opContext); a known listing costs no
	// context, which matters when every open asks here first.
	kl, err := c.listing(ctx, p, false)
	if err != nil && !errors.Is(err, errNeedNAR) {
		return nil, err
	}
	if err != nil || kl.index() == nil {
		return nil, errNotIndexed
	}
	n, err := kl.Find(sub)
	if err != nil {
		return nil, fmt.Errorf("%s/%s: %w (%v)", p.Path, sub, ErrNotFound, err)
	}
	if n.Type != nar.TypeRegular {
		return nil, fmt.Errorf("%s/%s: %w (a %s, not a regular file)", p.Path, sub, ErrNotFound, n.Type)
	}
	o := c.origin(p)
	r, err := c.local.OpenBlob(kl.v, p.v, o)
	if err != nil {
		return nil, err
	}
	return c.local.OpenChunked(r, p.v, n, o), nil
}
