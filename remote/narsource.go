package remote

import (
	"context"
	"io"

	"github.com/narfs/narfs/remote/internal/upstream"
	"github.com/narfs/narfs/remote/narinfo"
)

// openNAR opens the NAR object of a narinfo and returns its body and the
// transport encoding to remove (upstream.Cache.OpenNAR: in parallel parts
// when it is large and the cache answers ranges exactly).
func (s *Store) openNAR(ctx context.Context, ni *narinfo.NarInfo) (io.ReadCloser, string, error) {
	return s.up.OpenNAR(ctx, ni)
}

// parallelFirstPart is the size above which a NAR is fetched in parts.
var parallelFirstPart = upstream.FirstPart
