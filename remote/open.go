package remote

import (
	"context"
	"errors"
	"io"
	"os"

	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/remote/internal/content"
)

// Open opens the regular file sub of p for reading. Whether it is read
// by chunks (the cache keeps a signed chunk index of p) or from the
// verified NAR in the local cache is decided here; either way which
// bytes a reader gets is decided by the verified listing alone.
func (g *Core) Open(ctx context.Context, p *PathInfo, sub string) (*File, error) {
	c := g.of(p)
	cf, err := c.openChunked(ctx, p, sub)
	if err == nil {
		return &File{chunked: cf, own: cf.Own(), node: cf.Node()}, nil
	}
	if !errors.Is(err, errNotIndexed) {
		return nil, err
	}
	lf, n, err := c.openVerified(ctx, p, sub)
	if err != nil {
		return nil, err
	}
	f := &File{span: lf, node: n}
	if lf.Own() {
		f.own = lf
	}
	return f, nil
}

// File is an open regular file of a store path: its bytes are the
// verified NAR's (or verified chunks'). Not safe for concurrent Close.
type File struct {
	node    *nar.Node
	span    *content.Span    // read from the local cache; nil when chunked
	chunked *content.Chunked // read by chunks; nil when span
	own     *content.Span    // the file's own copy, if it has one
}

// Node is the file's node in the verified listing (Size, Executable).
func (f *File) Node() *nar.Node { return f.node }

// ReadAt reads the file's bytes at off, fetching (by chunks) what is not
// local yet; ctx bounds that wait.
func (f *File) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	switch {
	case f.own != nil:
		return f.own.ReadAt(p, off)
	case f.chunked != nil:
		return f.chunked.ReadAt(ctx, p, off)
	}
	return f.span.ReadAt(p, off)
}

// ReadCached reads the whole file into p (at least its size) when every
// byte of it is verified in the local cache already; it fetches nothing.
func (f *File) ReadCached(p []byte) (int, bool) {
	size := f.node.Size
	if int64(len(p)) < size {
		return 0, false
	}
	if f.own == nil && f.chunked != nil {
		return f.chunked.ReadCached(p)
	}
	r := f.own
	if r == nil {
		r = f.span
	}
	n, err := r.ReadAt(p[:size], 0)
	return n, int64(n) == size && (err == nil || err == io.EOF)
}

// Passthrough is the file's own copy when it has one and is at least
// MaxRead bytes (the kernel can read it directly), nil otherwise.
func (f *File) Passthrough() *os.File {
	if f.own == nil || f.node.Size < MaxRead {
		return nil
	}
	return f.own.File
}

// Reader reads the file from its start; ctx bounds the fetches.
func (f *File) Reader(ctx context.Context) io.Reader {
	switch {
	case f.own != nil:
		return f.own.Reader()
	case f.chunked != nil:
		return f.chunked.Reader(ctx)
	}
	return f.span.Reader()
}

// Close releases the file.
func (f *File) Close() error {
	if f.chunked != nil {
		return f.chunked.Close() // closes its own copy too
	}
	return f.span.Close()
}
