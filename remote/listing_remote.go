package remote

import (
	"context"

	"github.com/narfs/narfs/nar"
)

// remoteListing fetches and checks the unsigned .ls, returning it with
// its cost in memory (upstream.Cache.Listing).
func (s *Store) remoteListing(ctx context.Context, p *PathInfo) (*nar.Listing, int64, error) {
	return s.up.Listing(ctx, p.v)
}
