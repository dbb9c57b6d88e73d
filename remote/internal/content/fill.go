package content

import (
	"context"
	"errors"
	"fmt"

	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/remote/blob"
	"github.com/narfs/narfs/remote/chunkindex"
	"github.com/narfs/narfs/remote/internal/trust"
	"github.com/narfs/narfs/remote/internal/tune"
)

// Fill fills an indexed path's open blob r with every chunk, each
// verified against the signed index, and gives its large files files of
// their own, as reading every file through the mount would. Chunks
// already there (written by this or another process) are checked, not
// fetched. The caller keeps its reference on r.
func (s *Store) Fill(ctx context.Context, r *Blob, p *trust.Path, o Origin) error {
	x := r.b.Index()
	windows := chunkWindows(x.Chunks, tune.PrefetchWindow)
	for i, w := range windows {
		ra := w[1]
		if i+1 < len(windows) {
			ra = windows[i+1][1]
		}
		// Bounded like a download of the window, so that a cache that
		// went away fails the path instead of being asked forever.
		wctx, cancel := context.WithTimeout(ctx, s.o.Deadline(2*tune.PrefetchWindow))
		err := r.b.Ensure(wctx, w[0], w[1], ra)
		cancel()
		if err != nil {
			if errors.Is(err, blob.ErrChunk) {
				o.Counters.Corrupt()
				return fmt.Errorf("%s: %w: %w", p.StorePath, trust.ErrCorrupt, err)
			}
			return fmt.Errorf("%s: %w", p.StorePath, err)
		}
	}
	var ownErr error
	walkRegular(x.Listing.Root, func(n *nar.Node) {
		if n.Size >= tune.OwnFileMin && ownErr == nil {
			ownErr = s.copyOwn(r, n)
		}
	})
	if ownErr != nil {
		return fmt.Errorf("%s: giving a large file a file of its own: %w", p.StorePath, ownErr)
	}
	return nil
}

// chunkWindows splits chunks into consecutive runs [first, last) of about
// size NAR bytes each (at least one chunk).
func chunkWindows(chunks []chunkindex.Chunk, size int64) [][2]int {
	var ws [][2]int
	start, startOff := 0, int64(0)
	for i, c := range chunks {
		if end := c.NarEnd(); end-startOff >= size || i == len(chunks)-1 {
			ws = append(ws, [2]int{start, i + 1})
			start, startOff = i+1, end
		}
	}
	return ws
}

// walkRegular calls fn for every regular file under n.
func walkRegular(n *nar.Node, fn func(*nar.Node)) {
	switch n.Type {
	case nar.TypeRegular:
		fn(n)
	case nar.TypeDirectory:
		for _, e := range n.Entries {
			walkRegular(e, fn)
		}
	}
}
