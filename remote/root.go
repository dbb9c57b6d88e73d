package remote

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/nar/compress"
	"github.com/narfs/narfs/remote/backend"
	"github.com/narfs/narfs/remote/internal/tune"
)

// Root returns a store path's root node, which is what a lookup in the
// store directory needs: from a listing when one is at hand (memory, local
// cache, .ls), otherwise from the first header of its NAR, reading only
// its first bytes instead of the whole NAR. A directory found that way has
// nil Entries: Listing gives its contents. Like a .ls, a peeked header is
// not verified until the NAR is fetched (and then cross-checked), so with
// VerifiedMetadataOnly, and on indexed caches (unsignedMetadataOK), the
// signed index's listing or the whole NAR is used instead. A path that is a
// single symlink is always verified first: its NAR is tiny, and a target
// is exactly what a lie would want to choose.
func (s *Store) Root(ctx context.Context, p *PathInfo) (*nar.Node, error) {
	if !s.unsignedMetadataOK(p) {
		// An index's signed listing when it has one, else the NAR's.
		kl, err := s.listing(ctx, p, true)
		if err != nil {
			return nil, err
		}
		return kl.Root, nil
	}
	kl, err := s.listing(ctx, p, false)
	if err == nil {
		if kl.Root.Type == nar.TypeSymlink && !kl.verified() {
			return s.verifiedRoot(ctx, p)
		}
		return kl.Root, nil
	}
	if !errors.Is(err, errNeedNAR) {
		return nil, err
	}
	pctx, cancel := s.opContext(ctx)
	defer cancel()
	n, err := s.peekRoot(pctx, p)
	if err != nil {
		return nil, err
	}
	switch n.Type {
	case nar.TypeSymlink:
		return s.verifiedRoot(ctx, p)
	case nar.TypeRegular:
		// A lone file: the header is the whole listing.
		s.listings.add(p.Path.Hash, &knownListing{Listing: &nar.Listing{Root: n}})
	}
	return n, nil
}

func (s *Store) verifiedRoot(ctx context.Context, p *PathInfo) (*nar.Node, error) {
	l, err := s.VerifiedListing(ctx, p)
	if err != nil {
		return nil, err
	}
	return l.Root, nil
}

// peekRoot decodes the first header of the NAR.
func (s *Store) peekRoot(ctx context.Context, p *PathInfo) (*nar.Node, error) {
	ni := p.NarInfo
	where := fmt.Sprintf("NAR %s of %s", ni.URL, p.Path)
	var body io.ReadCloser
	if ni.FileSize > tune.RootPeek {
		rc, err := s.be.GetRange(ctx, ni.URL, 0, tune.RootPeek)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		body = rc
	} else {
		obj, err := s.be.Get(ctx, ni.URL)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		td, err := backend.NewContentDecoder(obj.ContentEncoding, obj.Body)
		if err != nil {
			obj.Body.Close()
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		body = readCloser{td, obj.Body}
	}
	defer body.Close()
	dec, err := compress.NewReader(ni.EffectiveCompression(), body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %v", where, ErrCorrupt, err)
	}
	defer dec.Close()
	h, err := nar.NewReader(dec).Next()
	if err != nil {
		if errors.Is(err, nar.ErrInvalid) {
			return nil, fmt.Errorf("%s: %w: %v", where, ErrCorrupt, err)
		}
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	return &nar.Node{Type: h.Type, Size: h.Size, Executable: h.Executable, NarOffset: h.Offset, Target: h.LinkTarget}, nil
}

// readCloser reads from a decoder and closes both it and the body under it.
type readCloser struct {
	io.ReadCloser
	body io.Closer
}

func (r readCloser) Close() error {
	r.ReadCloser.Close()
	return r.body.Close()
}
