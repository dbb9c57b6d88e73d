package remote

import (
	"context"
	"errors"
	"fmt"

	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/remote/internal/content"
	"github.com/narfs/narfs/remote/internal/trust"
	"github.com/narfs/narfs/remote/internal/tune"
)

// ErrNotIndexed: the path has no valid chunk index; read it whole.
var ErrNotIndexed = errors.New("no valid chunk index")

// DefaultIndexedWholeMax is Config.IndexedWholeMax's default (see
// tune.DefaultIndexedWholeMax for why).
const DefaultIndexedWholeMax = tune.DefaultIndexedWholeMax

// ChunkedFile is an open regular file of an indexed path: reads fetch and
// verify only the chunks they cover.
type ChunkedFile = content.Chunked

// blobRef is an indexed path's open blob, shared by every cache.
type blobRef = content.Blob

// OpenChunked opens a regular file of a path that has a valid chunk
// index, without fetching anything but the index. Paths without one give
// ErrNotIndexed: use OpenVerified.
func (s *Store) OpenChunked(ctx context.Context, p *PathInfo, sub string) (*ChunkedFile, error) {
	// listing bounds its own wait (opContext); a known listing costs no
	// context, which matters when every open asks here first.
	kl, err := s.listing(ctx, p, false)
	if err != nil && !errors.Is(err, errNeedNAR) {
		return nil, err
	}
	if err != nil || kl.index() == nil {
		return nil, ErrNotIndexed
	}
	n, err := kl.Find(sub)
	if err != nil {
		return nil, fmt.Errorf("%s/%s: %w (%v)", p.Path, sub, ErrNotFound, err)
	}
	if n.Type != nar.TypeRegular {
		return nil, fmt.Errorf("%s/%s: %w (a %s, not a regular file)", p.Path, sub, ErrNotFound, n.Type)
	}
	r, err := s.openBlob(kl.v, p)
	if err != nil {
		return nil, err
	}
	return s.local.OpenChunked(r, p.v, n, s.origin(p)), nil
}

// openBlob returns the indexed path's blob (shared by every cache that
// reaches it), creating its local cache entry the first time.
func (s *Store) openBlob(v *trust.Listing, p *PathInfo) (*blobRef, error) {
	return s.local.OpenBlob(v, p.v, s.origin(p))
}

func (s *Store) releaseBlob(r *blobRef) { s.local.ReleaseBlob(r) }
