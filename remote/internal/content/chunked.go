package content

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/remote/blob"
	"github.com/narfs/narfs/remote/chunkindex"
	"github.com/narfs/narfs/remote/internal/trust"
	"github.com/narfs/narfs/remote/internal/tune"
)

// Lock order: Chunked.mu → Store.blobsMu (Close → publishOwn, ReleaseBlob);
// see store.go.

// OpenChunked opens the regular file n of an indexed path over its open
// blob r (OpenBlob), whose reference it takes over: reads fetch and
// verify only the chunks they cover, from o's cache (or another opener's,
// see source).
func (s *Store) OpenChunked(r *Blob, p *trust.Path, n *nar.Node, o Origin) *Chunked {
	f := &Chunked{s: s, p: p, o: o, ref: r, node: n}
	if n.Size >= tune.OwnFileMin {
		// Once complete, a large file has a file of its own, which the
		// kernel can read directly: served only once it matches the hash
		// recorded when it was copied from verified chunks.
		f.own = s.openOwn(r, p, o, n)
	}
	return f
}

// Chunked is an open regular file of an indexed path: reads fetch and
// verify only the chunks they cover.
type Chunked struct {
	s    *Store
	p    *trust.Path
	o    Origin // the opener's cache: its counters
	ref  *Blob
	node *nar.Node

	own *Span // the file's own copy, when it had one at open

	mu      sync.Mutex
	nextOff int64 // where a sequential reader reads next
	window  int64 // readahead, grown while reads are sequential
	// wholeAsked: the whole file was asked for (wholeFileMax).
	wholeAsked bool
	closed     bool
}

// Own returns the file's own copy in the local cache, verified when it
// was made, or nil while it has none: it is made once every chunk of a
// large file has been read. The Chunked keeps ownership of it.
func (f *Chunked) Own() *Span { return f.own }

// Node is the file's node in the signed listing.
func (f *Chunked) Node() *nar.Node { return f.node }

// ReadAt reads the file's bytes at off; every byte returned is from a
// chunk verified against the index.
func (f *Chunked) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if off >= f.node.Size {
		return 0, io.EOF
	}
	n, err := f.ensure(ctx, off, int64(len(p)))
	if err != nil || n == 0 {
		return 0, err
	}
	// ensure verified the range; read it without checking again.
	got, err := f.ref.b.ReadVerified(p[:n], f.node.NarOffset+off)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", f.p.StorePath, err)
	}
	if int64(got) < n {
		return got, io.ErrUnexpectedEOF
	}
	return got, nil
}

// ReadCached reads the whole file into p (at least its size) if every
// chunk it spans is already verified in the local cache, and fetches
// nothing: ok is false when a chunk is missing or the read fails.
func (f *Chunked) ReadCached(p []byte) (n int, ok bool) {
	size := f.node.Size
	if int64(len(p)) < size {
		return 0, false
	}
	first, last := f.ref.b.Index().Span(f.node.NarOffset, size)
	if !f.ref.b.Complete(first, last) {
		return 0, false
	}
	n, err := f.ref.b.ReadVerified(p[:size], f.node.NarOffset)
	return n, err == nil && int64(n) == size
}

// ensure fetches and verifies what a read of n bytes at off needs, with
// readahead, and returns how many bytes of the file it covers.
func (f *Chunked) ensure(ctx context.Context, off, n int64) (int64, error) {
	size := f.node.Size
	if off >= size || n <= 0 {
		return 0, nil
	}
	if off < 0 {
		return 0, fmt.Errorf("negative offset")
	}
	if n > size-off {
		n = size - off
	}
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return 0, fmt.Errorf("read of a closed file")
	}
	// Kernel readahead sends reads slightly out of order: near the last
	// end counts as sequential.
	if d := off - f.nextOff; d > -tune.MaxRead && d < tune.MaxRead && off > 0 {
		f.window = min(max(2*f.window, tune.MinWindow), tune.MaxWindow)
	} else {
		f.window = 0
	}
	f.nextOff = max(f.nextOff, off+n)
	window := f.window
	whole := !f.wholeAsked && (size <= tune.WholeFileMax || f.node.Executable && size <= tune.ExecWholeMax)
	f.wholeAsked = f.wholeAsked || whole
	f.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, f.s.o.Timeout)
	defer cancel()
	x := f.ref.b.Index()
	base := f.node.NarOffset
	first, last := x.Span(base+off, n)
	_, raLast := x.Span(base+off, min(size-off, n+window))
	// The reader's own chunks are asked for first, then a small path's
	// fill, then the wait for the reader's chunks.
	if whole {
		// A file of moderate size (or a program, tune.ExecWholeMax) is
		// asked for whole at its first read: a program's pages fault in
		// out of order, and each would otherwise cost a round trip.
		// Small files also bring chunks after theirs (smallReadahead):
		// files of a directory lie together in a NAR, and are often read
		// together (imports, includes).
		ff, fl := x.Span(base, size)
		if size < chunkindex.TargetChunk && !f.ref.b.Complete(ff, fl) {
			fl = min(fl+f.ref.smallReadahead(ff), len(x.Chunks))
		}
		f.ref.b.Ensure(ctx, ff, ff, max(fl, raLast)) // starts the requests, waits for none
	} else {
		f.ref.b.Ensure(ctx, first, first, raLast)
	}
	f.ref.fill(f.s.o.IndexedWholeMax, last)
	if err := f.ref.b.Ensure(ctx, first, last, raLast); err != nil {
		if errors.Is(err, blob.ErrChunk) {
			f.o.Counters.Corrupt()
			return 0, fmt.Errorf("%s: %w: %w", f.p.StorePath, trust.ErrCorrupt, err)
		}
		return 0, fmt.Errorf("%s: %w", f.p.StorePath, err)
	}
	return n, nil
}

// Close releases the file; the blob stays open a while for the next.
func (f *Chunked) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.closed {
		f.closed = true
		if f.own != nil {
			f.own.Close()
		} else {
			f.s.publishOwn(f.ref, f.p, f.o, f.node)
		}
		f.s.ReleaseBlob(f.ref)
	}
	return nil
}

// Reader reads the file from its start, each call bounded like ReadAt.
func (f *Chunked) Reader(ctx context.Context) io.Reader {
	return &chunkedReader{ctx: ctx, f: f}
}

type chunkedReader struct {
	ctx context.Context
	f   *Chunked
	off int64
}

func (r *chunkedReader) Read(p []byte) (int, error) {
	if len(p) > tune.MaxRead {
		p = p[:tune.MaxRead]
	}
	n, err := r.f.ReadAt(r.ctx, p, r.off)
	r.off += int64(n)
	return n, err
}
