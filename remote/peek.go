package remote

import (
	"context"

	"github.com/narfs/narfs/nar"
)

// peekRoot decodes the first header of the NAR (upstream.Cache.PeekRoot).
func (s *Store) peekRoot(ctx context.Context, p *PathInfo) (*nar.Node, error) {
	return s.up.PeekRoot(ctx, p.v)
}
