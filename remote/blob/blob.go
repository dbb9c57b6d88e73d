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
	"github.com/narfs/narfs/remote/internal/tune"
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

// Ensure returns once chunks [first, last) are verified in the blob,
// starting requests for those missing and, in the same requests, for the
// missing chunks up to raLast.
func (b *Blob) Ensure(ctx context.Context, first, last, raLast int) error {
	raLast = max(raLast, last)
	for {
		if b.Complete(first, last) && (raLast == last || b.Complete(last, raLast)) {
			return nil
		}
		// Another process sharing the cache dir may have written chunks
		// since: its marks make them claims to check, not fetches.
		marks := make([]byte, raLast-first)
		n, _ := b.marks.ReadAt(marks, int64(first))
		var waits []chan struct{}
		var checks []int
		var runs [][2]int
		var hc holdCall
		now := time.Now()
		b.mu.Lock()
		for i := first; i < first+n; i++ {
			if marks[i-first] == 1 && b.chunks[i].st == missing && !b.chunks[i].badClaim {
				b.chunks[i].st = claimed
			}
		}
		for i := first; i < raLast; i++ {
			c := &b.chunks[i]
			switch c.st {
			case verified:
				continue
			case inflight:
				if i < last {
					waits = append(waits, c.done)
					if c.run != nil {
						c.run.promote()
					}
				}
				continue
			case claimed:
				c.st, c.done, c.run = inflight, make(chan struct{}), nil
				checks = append(checks, i)
				if i < last {
					waits = append(waits, c.done)
				}
				continue
			}
			if now.Before(c.failedUntil) {
				if i < last {
					b.mu.Unlock()
					return c.err
				}
				continue
			}
			c.st, c.done, c.run = inflight, make(chan struct{}), nil
			if i < last {
				waits = append(waits, c.done)
			}
			if b.holdLocked(i, &hc) {
				continue
			}
			if n := len(runs); n > 0 && runs[n-1][1] == i && b.runBytes(runs[n-1][0], i+1) <= maxRun {
				runs[n-1][1] = i + 1
			} else {
				runs = append(runs, [2]int{i, i + 1})
			}
		}
		b.mu.Unlock()
		b.startHeld()
		for _, i := range checks {
			b.check(i)
		}
		for _, r := range runs {
			go b.fetch(r[0], r[1], nil)
		}
		if len(waits) == 0 {
			return nil
		}
		retry := false
		for _, w := range waits {
			select {
			case <-w:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		b.mu.Lock()
		for i := first; i < last; i++ {
			c := &b.chunks[i]
			if c.st == verified {
				continue
			}
			if c.st == missing && c.err != nil && c.err != errRetry {
				err := c.err
				b.mu.Unlock()
				return err
			}
			retry = true
		}
		b.mu.Unlock()
		if !retry {
			return nil
		}
		// Chunks a failed request never reached, or claims that did not
		// hold: ask again (ctx bounds how long), without readahead.
		raLast = last
	}
}

// Prefetch starts background requests (Options.Background) for the
// missing chunks of [first, last), starting at from and wrapping around,
// and waits for none. Chunks claimed by another process are left for the
// reads that need them to check.
func (b *Blob) Prefetch(first, last, from int) {
	from = min(max(from, first), last)
	var runs [][2]int
	hc := holdCall{bg: true}
	var claims []*run
	b.mu.Lock()
	now := time.Now()
	for _, span := range [][2]int{{from, last}, {first, from}} {
		for i := span[0]; i < span[1]; i++ {
			c := &b.chunks[i]
			if c.st != missing || now.Before(c.failedUntil) {
				continue
			}
			c.st, c.done, c.run = inflight, make(chan struct{}), nil
			if b.holdLocked(i, &hc) {
				continue
			}
			n := len(runs)
			if n > 0 && runs[n-1][1] == i && b.runBytes(runs[n-1][0], i+1) <= maxRun {
				runs[n-1][1] = i + 1
			} else {
				runs = append(runs, [2]int{i, i + 1})
				claims = append(claims, &run{urgent: make(chan struct{})})
				n++
			}
			c.st, c.done, c.run = inflight, make(chan struct{}), claims[n-1]
		}
	}
	b.mu.Unlock()
	b.startHeld()
	for k, r := range runs {
		go b.fetch(r[0], r[1], claims[k])
	}
}

func (b *Blob) runBytes(i, j int) int64 {
	return b.x.Chunks[j-1].FileOffset + b.x.Chunks[j-1].FileLen - b.x.Chunks[i].FileOffset
}

// settle ends chunk i's flight.
func (b *Blob) settle(i int, ok bool, err error) {
	b.mu.Lock()
	c := &b.chunks[i]
	if ok {
		c.st, c.err = verified, nil
	} else {
		c.st, c.err = missing, err
		if errors.Is(err, ErrChunk) {
			c.failedUntil = time.Now().Add(tune.CorruptMemo)
		}
	}
	close(c.done)
	b.mu.Unlock()
}

// check verifies a chunk someone else marked, from the blob.
func (b *Blob) check(i int) {
	c := b.x.Chunks[i]
	buf := make([]byte, c.NarLen)
	if _, err := b.blob.ReadAt(buf, c.NarOffset); err == nil && sha256.Sum256(buf) == c.SHA256 {
		b.settle(i, true, nil)
		return
	}
	b.mu.Lock()
	b.chunks[i].badClaim = true
	b.mu.Unlock()
	b.settle(i, false, errRetry)
}

// chunkBufs holds the buffers of a run's stored and decoded chunks (about
// a chunk each), reused from run to run: runs fetched in parallel would
// otherwise leave a few MiB of garbage each, which the collector lets
// grow the heap to twice what is live before it runs.
var chunkBufs = sync.Pool{New: func() any { return new([]byte) }}

// fetch requests chunks [i, j) in one ranged GET and settles each as soon
// as it is verified and written. bg: a background run (Prefetch).
func (b *Blob) fetch(i, j int, bg *run) {
	defer func() {
		if r := recover(); r != nil {
			b.opts.Logger.Error("panic fetching chunks", "panic", r)
			for k := i; k < j; k++ {
				b.settleIfInflight(k, fmt.Errorf("internal error: %v", r))
			}
		}
	}()
	first := b.x.Chunks[i]
	n := b.runBytes(i, j)
	ctx, cancel := context.WithTimeout(b.bg, b.fetchDeadline(n))
	defer cancel()
	if b.opts.OnFetch != nil {
		b.opts.OnFetch(n)
	}
	rc, streamed, err := b.request(ctx, i, j, first.FileOffset, n)
	if streamed {
		return // the object's stream settled [i, j)
	}
	if err != nil {
		b.opts.Logger.Warn("chunk request failed", "url", b.x.URL, "offset", first.FileOffset, "bytes", n, "err", err)
		b.settle(i, false, err)
		for k := i + 1; k < j; k++ {
			b.settle(k, false, errRetry)
		}
		return
	}
	defer rc.Close()
	if bg != nil && b.opts.Background != nil {
		select {
		case b.opts.Background <- struct{}{}:
			defer func() { <-b.opts.Background }()
		case <-bg.urgent:
		case <-ctx.Done():
			b.settle(i, false, errRetry)
			for k := i + 1; k < j; k++ {
				b.settle(k, false, errRetry)
			}
			return
		}
	}
	sp, op := chunkBufs.Get().(*[]byte), chunkBufs.Get().(*[]byte)
	stored, out := (*sp)[:0], (*op)[:0]
	defer func() {
		*sp, *op = stored[:0], out[:0]
		chunkBufs.Put(sp)
		chunkBufs.Put(op)
	}()
	for k := i; k < j; k++ {
		c := b.x.Chunks[k]
		if int64(cap(stored)) < c.FileLen {
			stored = make([]byte, c.FileLen)
		}
		stored = stored[:c.FileLen]
		_, err := io.ReadFull(rc, stored)
		if err == nil {
			out, err = b.x.DecodeChunk(out[:0], c, stored)
			if err != nil {
				b.opts.Logger.Error("chunk failed verification; not served", "url", b.x.URL, "nar-offset", c.NarOffset, "err", err)
			}
		}
		if err == nil {
			err = b.write(k, c, out)
		}
		if err != nil {
			b.settle(k, false, err)
			for m := k + 1; m < j; m++ {
				b.settle(m, false, errRetry)
			}
			return
		}
		b.settle(k, true, nil)
	}
}

func (b *Blob) settleIfInflight(k int, err error) {
	b.mu.Lock()
	inflight := b.chunks[k].st == inflight
	b.mu.Unlock()
	if inflight {
		b.settle(k, false, err)
	}
}

// write stores a verified chunk: its bytes, then its mark.
func (b *Blob) write(k int, c chunkindex.Chunk, data []byte) error {
	if _, err := b.blob.WriteAt(data, c.NarOffset); err != nil {
		return fmt.Errorf("%w: writing chunk: %w", ErrLocal, err)
	}
	if _, err := b.marks.WriteAt([]byte{1}, int64(k)); err != nil {
		return fmt.Errorf("%w: marking chunk: %w", ErrLocal, err)
	}
	return nil
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
