package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/nar/compress"
	"github.com/narfs/narfs/remote/backend"
	"github.com/narfs/narfs/remote/internal/trust"
	"github.com/narfs/narfs/remote/internal/tune"
	"github.com/narfs/narfs/remote/stats"
)

// PeekRoot decodes the first header of the path's NAR: unverified
// metadata of its root, read with one small request.
func (c *Cache) PeekRoot(ctx context.Context, p *trust.Path) (*nar.Node, error) {
	ni := p.NarInfo
	where := fmt.Sprintf("NAR %s of %s", ni.URL, p.StorePath)
	be := c.counted.For(stats.KindNar)
	var body io.ReadCloser
	if ni.FileSize > tune.RootPeek {
		rc, err := be.GetRange(ctx, ni.URL, 0, tune.RootPeek)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		body = rc
	} else {
		obj, err := be.Get(ctx, ni.URL)
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
		return nil, fmt.Errorf("%s: %w: %v", where, trust.ErrCorrupt, err)
	}
	defer dec.Close()
	h, err := nar.NewReader(dec).Next()
	if err != nil {
		if errors.Is(err, nar.ErrInvalid) {
			return nil, fmt.Errorf("%s: %w: %v", where, trust.ErrCorrupt, err)
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
