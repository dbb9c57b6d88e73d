package remote

import (
	"context"
	"errors"

	"github.com/narfs/narfs/nar"
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
	if st, ok := s.listings.Get(p.Path.Hash); ok && st.Tree() == nil && st.Peeked != nil {
		// Peeked before (a directory's header): the core keeps it, so a
		// front end asking again costs no request.
		s.listings.Handed(p.Path.Hash, st.Peeked, nil)
		return st.Peeked, nil
	}
	kl, err := s.listing(ctx, p, false)
	if err == nil {
		if kl.Root.Type == nar.TypeSymlink && !kl.verified() {
			return s.verifiedRoot(ctx, p)
		}
		if !kl.verified() {
			s.listings.Handed(p.Path.Hash, kl.Root, nil)
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
	if n.Type == nar.TypeSymlink {
		return s.verifiedRoot(ctx, p)
	}
	// Kept until verified: a lone file's header is its whole listing, a
	// directory's answers Root again.
	s.listings.SetPeeked(p.Path.Hash, n)
	s.listings.Handed(p.Path.Hash, n, nil)
	return n, nil
}

func (s *Store) verifiedRoot(ctx context.Context, p *PathInfo) (*nar.Node, error) {
	l, err := s.VerifiedListing(ctx, p)
	if err != nil {
		return nil, err
	}
	return l.Root, nil
}
