// Package blob keeps a NAR of an indexed store path as one sparse local
// file, filled in chunk by chunk as readers need them, each chunk verified
// against the signed chunk index before any byte of it is served.
//
// # On disk (inside a local cache entry)
//
//	blob        the uncompressed NAR, NarSize bytes, sparse where not fetched
//	chunks      one byte per chunk of the index: 1 once its bytes were written
//	index.nidx  the index object the entry was made from (verified then)
//
// A chunk's bytes are written to the blob before its byte in chunks is
// set, so a SIGKILL at any instant leaves at worst a chunk written but not
// marked (fetched again). A mark is only a claim: a process that did not
// write a chunk itself (after a restart, or another process sharing the
// cache dir) hashes the chunk from the blob once before serving it, so a
// torn write or a lost page after a crash is caught, never served.
package blob

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/narfs/narfs/remote/chunkindex"
	"github.com/narfs/narfs/remote/localcache"
)

// Names of the entry's files.
const (
	BlobFile  = "blob"
	MarksFile = "chunks"
	IndexFile = "index.nidx"
)

// ErrChunk wraps chunkindex.ErrChunk: a chunk from the cache did not
// match the index. Its readers get EIO; the chunk is not fetched again for
// a while.
var ErrChunk = chunkindex.ErrChunk

// errRetry: the chunk was in a request that failed before reaching it;
// its waiters start a request of their own.
var errRetry = errors.New("chunk not reached; retry")

// maxRun bounds the stored bytes one ranged request asks for: longer
// spans are split so several requests run in parallel.
const maxRun = 2 << 20

// Source reads byte ranges of the stored NAR object (backend.GetRange).
type Source interface {
	GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error)
}

// Options of a Blob.
type Options struct {
	// FetchDeadline bounds one request for n stored bytes.
	FetchDeadline func(n int64) time.Duration
	Logger        *slog.Logger
	// OnFetch is called with the stored bytes of each request started, for
	// accounting (may be nil).
	OnFetch func(n int64)
	// Background, if set, holds the slots of background runs (Prefetch):
	// one is taken from the response's headers to its last chunk, so that
	// a background fetch of a whole path never takes every core from the
	// reads that wait for their own chunks. A run whose chunk a reader
	// waits for stops waiting for a slot.
	Background chan struct{}
	// Ranges is what the source is known to do with range requests,
	// shared by the blobs of one cache (default: the blob's own). See
	// stream.go for servers that ignore Range.
	Ranges *Ranges
	// Hold, if set, is called when a stream of the whole object starts
	// and returns what to call when it ended: the blob must stay open
	// meanwhile, or the chunks it would bring cost the prefix again.
	Hold func() (release func())
}

// run is one background request's claim on its chunks.
type run struct {
	urgent chan struct{} // closed once a reader waits for one of them
	once   sync.Once
}

func (r *run) promote() { r.once.Do(func() { close(r.urgent) }) }

type state uint8

const (
	missing state = iota
	claimed       // marked on disk by someone else: hash before use
	inflight
	verified
)

type chunk struct {
	st          state
	done        chan struct{} // closed when an inflight chunk settles
	err         error         // why it settled unverified
	failedUntil time.Time
	badClaim    bool // its mark was found to lie: fetch it
	run         *run // the background run fetching it, nil for readers'
}

// Blob is one indexed NAR being read. Safe for concurrent use.
type Blob struct {
	x     *chunkindex.Index
	src   Source
	opts  Options
	blob  *os.File
	marks *os.File
	bg    context.Context

	mu     sync.Mutex
	chunks []chunk
	// How chunks are fetched (stream.go); protected by mu.
	mode         rangeMode
	probing      bool    // the probe is in flight
	queued       []int   // chunks waiting for the probe's answer
	stream       *stream // reading the object from its start
	nextStream   *stream // to run after it, for chunks it had passed
	startPending bool    // stream was created and is not started yet
}

// New returns the Blob over an entry's open blob and marks files.
func New(bg context.Context, x *chunkindex.Index, blobF, marksF *os.File, src Source, opts Options) (*Blob, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.FetchDeadline == nil {
		opts.FetchDeadline = func(int64) time.Duration { return time.Minute }
	}
	if opts.Ranges == nil {
		opts.Ranges = new(Ranges)
	}
	b := &Blob{x: x, src: src, opts: opts, blob: blobF, marks: marksF, bg: bg, chunks: make([]chunk, len(x.Chunks))}
	m := make([]byte, len(x.Chunks))
	n, err := marksF.ReadAt(m, 0)
	if err != nil && err != io.EOF {
		return nil, fmt.Errorf("chunk marks: %w", err)
	}
	for i := range m[:n] {
		if m[i] == 1 {
			b.chunks[i].st = claimed
		}
	}
	return b, nil
}

// Index is the blob's chunk index.
func (b *Blob) Index() *chunkindex.Index { return b.x }

// ReadVerified reads NAR bytes at off from the blob, for a range Ensure
// has just returned for: no check is repeated.
func (b *Blob) ReadVerified(p []byte, off int64) (int, error) {
	return b.blob.ReadAt(p, off)
}

// ReadAt reads len(p) bytes of the NAR at off (clipped to the NAR) into
// p, fetching what is missing; chunks up to raEnd (a NAR offset; the end
// of the file being read, at most) are fetched ahead in the same requests
// without being waited for.
func (b *Blob) ReadAt(ctx context.Context, p []byte, off, raEnd int64) (int, error) {
	if off < 0 || off >= b.x.NarSize {
		return 0, io.EOF
	}
	if int64(len(p)) > b.x.NarSize-off {
		p = p[:b.x.NarSize-off]
	}
	first, last := b.x.Span(off, int64(len(p)))
	_, raLast := b.x.Span(off, max(raEnd, off+int64(len(p)))-off)
	if err := b.Ensure(ctx, first, last, raLast); err != nil {
		return 0, err
	}
	return b.blob.ReadAt(p, off)
}

// ErrLocal wraps failures of the local disk.
var ErrLocal = localcache.ErrLocal

// Close closes the blob's files. Reads in progress fail.
func (b *Blob) Close() error {
	b.blob.Close()
	return b.marks.Close()
}

// Complete reports whether chunks [first, last) are all verified.
func (b *Blob) Complete(first, last int) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := first; i < last; i++ {
		if b.chunks[i].st != verified {
			return false
		}
	}
	return true
}

// CopyTo writes the NAR bytes [off, off+n) to w from the blob, hashing
// every chunk they touch against the index on the way: what it copies is
// verified even if the blob changed on disk since.
func (b *Blob) CopyTo(w io.Writer, off, n int64) error {
	first, last := b.x.Span(off, n)
	var buf []byte
	for i := first; i < last; i++ {
		c := b.x.Chunks[i]
		if int64(cap(buf)) < c.NarLen {
			buf = make([]byte, c.NarLen)
		}
		buf = buf[:c.NarLen]
		if _, err := b.blob.ReadAt(buf, c.NarOffset); err != nil {
			return fmt.Errorf("%w: reading chunk: %w", ErrLocal, err)
		}
		if sha256.Sum256(buf) != c.SHA256 {
			b.mu.Lock()
			if b.chunks[i].st == verified {
				b.chunks[i].st = missing
			}
			b.mu.Unlock()
			return fmt.Errorf("%w: chunk at %d changed on disk", ErrLocal, c.NarOffset)
		}
		lo := max(off, c.NarOffset) - c.NarOffset
		hi := min(off+n, c.NarEnd()) - c.NarOffset
		if _, err := w.Write(buf[lo:hi]); err != nil {
			return fmt.Errorf("%w: %w", ErrLocal, err)
		}
	}
	return nil
}
