package remote

import (
	"context"
	"errors"

	"github.com/narfs/narfs/nar"
)

// root returns a store path's root node, which is what a lookup in the
// store directory needs: from a listing when one is at hand (memory, local
// cache, .ls), otherwise from the first header of its NAR, reading only
// its first bytes instead of the whole NAR. A directory found that way has
// nil Entries: listing gives its contents. Like a .ls, a peeked header is
// not verified until the NAR is fetched (and then cross-checked), so with
// VerifiedMetadataOnly, and on indexed caches (unsignedMetadataOK), the
// signed index's listing or the whole NAR is used instead. A path that is a
// single symlink is always verified first: its NAR is tiny, and a target
// is exactly what a lie would want to choose.
func (c *cache) root(ctx context.Context, p *PathInfo) (*nar.Node, error) {
	if !c.unsignedMetadataOK(p) {
		// An index's signed listing when it has one, else the NAR'c.
		kl, err := c.listing(ctx, p, true)
		if err != nil {
			return nil, err
		}
		return kl.Root, nil
	}
	if st, ok := c.listings.Get(p.Path.Hash); ok && st.Tree() == nil && st.Peeked != nil {
		// Peeked before (a directory's header): the core keeps it, so a
		// front end asking again costs no request.
		c.listings.Handed(p.Path.Hash, st.Peeked, nil)
		return st.Peeked, nil
	}
	kl, err := c.listing(ctx, p, false)
	if err == nil {
		if kl.Root.Type == nar.TypeSymlink && !kl.verified() {
			return c.verifiedRoot(ctx, p)
		}
		if !kl.verified() {
			c.listings.Handed(p.Path.Hash, kl.Root, nil)
		}
		return kl.Root, nil
	}
	if !errors.Is(err, errNeedNAR) {
		return nil, err
	}
	pctx, cancel := c.opContext(ctx)
	defer cancel()
	n, err := c.up.PeekRoot(pctx, p.v)
	if err != nil {
		return nil, err
	}
	if n.Type == nar.TypeSymlink {
		return c.verifiedRoot(ctx, p)
	}
	// Kept until verified: a lone file's header is its whole listing, a
	// directory's answers Root again.
	c.listings.SetPeeked(p.Path.Hash, n)
	c.listings.Handed(p.Path.Hash, n, nil)
	return n, nil
}

func (c *cache) verifiedRoot(ctx context.Context, p *PathInfo) (*nar.Node, error) {
	v, err := c.verifiedListing(ctx, p)
	if err != nil {
		return nil, err
	}
	return v.Tree().Root, nil
}
