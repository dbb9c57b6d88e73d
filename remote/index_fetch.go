package remote

import (
	"context"

	"github.com/narfs/narfs/remote/internal/trust"
)

// index returns the path's verified chunk index, or nil (never an error)
// when it has none or it is not usable: the path is then read the stock
// way (upstream.Cache.Index).
func (s *Store) index(ctx context.Context, p *PathInfo) *trust.Listing {
	return s.up.Index(ctx, p.v)
}

// IndexesDeclared reports whether the cache says it keeps a chunk index
// of its paths under their alias names (nix-cache-info's
// NarfsIndexAliases line, or a narinfo that named an index).
func (s *Store) IndexesDeclared() bool { return s.up.IndexesDeclared() }

// IndexVerified reports whether the path's chunk index verified in this
// Store, now or earlier (a listing held, or the index kept beside the
// path's records from an earlier run and still verifying).
func (s *Store) IndexVerified(p *PathInfo) bool {
	if kl, ok := s.known(p.Path.Hash); ok && kl.index() != nil {
		return true
	}
	return s.up.IndexRecorded(p.Path.Hash)
}
