package remote

import (
	"context"

	"golang.org/x/sync/singleflight"
)

// shared runs fn once for all concurrent callers of key. A caller whose
// context ends stops waiting (a reader's Ctrl-C interrupts its open at
// once) while the work goes on for the others and fills the caches; fn
// must therefore not use the caller's context for its I/O.
func shared(ctx context.Context, g *singleflight.Group, key string, fn func() (any, error)) (any, error) {
	select {
	case r := <-g.DoChan(key, fn):
		return r.Val, r.Err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
