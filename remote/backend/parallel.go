package backend

// Lock order: parallelReader.mu, then PartPool.mu (partpool.go). The
// pool's get and put are called with r.mu held (scheduleLocked,
// releaseHeadLocked, useWhole, Close); the pool takes only its own mutex,
// never calls back into a reader, and its trim timer takes only
// PartPool.mu. Part goroutines (fetch, in parallel_fetch.go) take r.mu only
// between requests and reads, never across one; Read drops it around the
// whole-object body's Read and while it waits for wake.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// ParallelOptions tune NewParallelReader. The zero value is usable.
type ParallelOptions struct {
	// FirstPart is the size of the first request (default 1 MiB): an
	// object no larger costs one request.
	FirstPart int64
	// MaxPart caps the size of one part (default Budget/MaxConcurrency);
	// with a Pool, the pool's PartSize.
	MaxPart int64
	// MinPart is the smallest part worth a request of its own (default
	// 256 KiB), except the object's last.
	MinPart int64
	// MaxConcurrency caps the requests in flight (default 16).
	MaxConcurrency int
	// Budget caps the bytes of all parts requested and not yet read by
	// the caller (default 16 MiB): the reader's memory.
	Budget int64
	// Pool lends the part buffers; readers sharing one hold its bound
	// together (default: a pool of the reader's own, of Budget bytes).
	Pool *PartPool
	// MaxResumes is how many times in a row one part's body may fail
	// without delivering a byte before the reader fails (default 5). A
	// resumption that makes progress resets the count; the context's
	// deadline bounds them all.
	MaxResumes int
	// RetryBaseDelay is the first backoff before a resumption (default
	// 100ms), doubling with each failure in a row.
	RetryBaseDelay time.Duration
}

// DefaultParallelBudget is ParallelOptions.Budget's default, and
// DefaultPartSize the part size it is cut in (MaxPart's default with the
// default MaxConcurrency). On a link with a 20 ms time to first byte and
// 90 MB/s per request (S3 in-region), a 1 MiB part spends 20 ms waiting
// and 12 ms streaming, and 16 of them in flight move ~530 MB/s (~6× one
// stream) in 16 MiB; larger parts move more per request but need more
// memory for the same rate.
const (
	DefaultParallelBudget = 16 << 20
	DefaultPartSize       = 1 << 20
)

// DefaultFirstPart is ParallelOptions.FirstPart's default: an object no
// larger costs one request; callers that choose between a parallel and a
// plain download compare against it.
const DefaultFirstPart = 1 << 20

func (o ParallelOptions) withDefaults() ParallelOptions {
	if o.MaxConcurrency <= 0 {
		o.MaxConcurrency = 16
	}
	if o.Budget <= 0 {
		o.Budget = DefaultParallelBudget
	}
	if o.MaxPart <= 0 {
		o.MaxPart = o.Budget / int64(o.MaxConcurrency)
	}
	o.MaxPart = max(min(o.MaxPart, o.Budget), 1)
	if o.Pool != nil {
		o.MaxPart = o.Pool.PartSize()
	}
	if o.FirstPart <= 0 {
		o.FirstPart = DefaultFirstPart
	}
	o.FirstPart = min(o.FirstPart, o.MaxPart)
	if o.Pool == nil {
		o.Pool = NewPartPool(o.MaxPart, o.Budget)
	}
	if o.MinPart <= 0 {
		o.MinPart = 256 << 10
	}
	o.MinPart = min(o.MinPart, o.MaxPart)
	if o.MaxResumes <= 0 {
		o.MaxResumes = 5
	}
	if o.RetryBaseDelay <= 0 {
		o.RetryBaseDelay = 100 * time.Millisecond
	}
	return o
}

// strictRangesKey marks a context whose GetRange calls must be answered
// with the exact stored bytes by the server itself: an http server that
// ignores Range (200) or encodes the response (Content-Encoding) fails
// the request with ErrUnsupported instead of being worked around. A
// context value, so that it passes through wrapping Backends.
type strictRangesKey struct{}

func strictRanges(ctx context.Context) bool { return ctx.Value(strictRangesKey{}) != nil }

// errClosed cancels the parts of a reader that was closed.
var errClosed = errors.New("parallel reader closed")

// NewParallelReader reads bytes [0, size) of key with several GetRange
// requests in flight and yields them in order.
//
// It starts with one request of FirstPart bytes, so a small object costs
// one request; once its response headers arrive (the server serves ranges)
// the window opens to MaxConcurrency at once: the object's size is known,
// and on a link with a 20 ms time to first byte each doubling step of a
// slow start would cost a round trip.
// Parts grow from FirstPart to MaxPart as they are scheduled, and the
// object's tail is split across the window (in parts of at least 1 MiB,
// or MaxPart if smaller) so the last parts finish together. Parts requested and not yet read never
// total more than Budget bytes, so a slow reader stops the downloads
// instead of buffering the object.
//
// A part whose body fails part way is resumed from its last byte with a
// new range request; the object is never restarted. The reader fails with
// the backend's error (errors.Is ErrNotFound, ErrStalled, ErrUnsupported,
// context.DeadlineExceeded...) when a request fails after the backend's
// own retries, when MaxResumes resumptions in a row deliver nothing, or
// at ctx's deadline. An http server that ignores Range (a 200 with the
// whole object) is read from that answer, as a Get would: the reader then
// yields the object as the server sends it, whatever its length (the
// caller verifies it), and ServedWhole reports it. One that adds a
// Content-Encoding fails the first request with ErrUnsupported: read the
// object with Get instead.
//
// Close cancels every request in flight and returns once their
// goroutines have ended. Read and Close must not be called concurrently.
func NewParallelReader(ctx context.Context, b Backend, key string, size int64, opts ParallelOptions) io.ReadCloser {
	opts = opts.withDefaults()
	ctx, cancel := context.WithCancelCause(context.WithValue(ctx, strictRangesKey{}, true))
	r := &parallelReader{
		ctx:      ctx,
		cancel:   cancel,
		b:        b,
		key:      key,
		size:     max(size, 0),
		opts:     opts,
		wake:     make(chan struct{}, 1),
		window:   1,
		partSize: opts.FirstPart,
	}
	return r
}

type parallelReader struct {
	// Read-only after NewParallelReader.
	ctx    context.Context
	cancel context.CancelCauseFunc
	b      Backend
	key    string
	size   int64
	opts   ParallelOptions
	wake   chan struct{} // a part made progress or failed; capacity 1
	wg     sync.WaitGroup

	// Only the caller's goroutine (Read, Close) uses these.
	pos    int64 // bytes of parts[0] already returned
	closed bool

	mu       sync.Mutex // protects the fields below
	parts    []*part    // scheduled and not entirely read, in order
	next     int64      // offset of the next part to schedule
	active   int        // parts whose worker is running
	buffered int64      // bytes of parts, the memory in use
	window   int        // parts allowed in flight
	partSize int64      // size of the next part before tail splitting
	opened   bool       // a response arrived: ranges work
	err      error      // the first failure; fails the reader
	// whole is the server's answer to the first part when it ignored
	// Range: the object from byte 0. Set once, by that part's worker;
	// then only the caller's goroutine reads it.
	whole io.ReadCloser
}

// part is one range. Its worker writes buf[filled:] and publishes filled
// under parallelReader.mu; the reader reads buf[:filled].
type part struct {
	off, n  int64
	buf     []byte // from opts.Pool
	charged bool   // buf counts against the pool's bound
	filled  int64  // protected by parallelReader.mu
	done    bool   // protected by parallelReader.mu
}

func (r *parallelReader) Read(p []byte) (int, error) {
	if r.closed {
		return 0, fmt.Errorf("%s: get %s: %w", r.b, keyName(r.key), errClosed)
	}
	if len(p) == 0 {
		return 0, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		if w := r.whole; w != nil {
			r.mu.Unlock()
			n, err := w.Read(p)
			r.mu.Lock()
			return n, err
		}
		r.scheduleLocked()
		if len(r.parts) == 0 {
			if r.err != nil {
				return 0, r.err
			}
			if r.next >= r.size {
				return 0, io.EOF
			}
		} else if head := r.parts[0]; r.pos < head.filled {
			n := copy(p, head.buf[r.pos:head.filled])
			r.pos += int64(n)
			if r.pos == head.n {
				r.releaseHeadLocked()
			}
			return n, nil
		}
		if r.err != nil {
			return 0, r.err
		}
		r.mu.Unlock()
		select {
		case <-r.wake:
		case <-r.ctx.Done():
			// The workers see it too and record the cause; wait
			// for that rather than guess it here.
			<-r.wake
		}
		r.mu.Lock()
	}
}

// releaseHeadLocked drops the part the reader has finished.
func (r *parallelReader) releaseHeadLocked() {
	head := r.parts[0]
	r.parts[0] = nil
	r.parts = r.parts[1:]
	r.pos = 0
	r.buffered -= head.n
	r.opts.Pool.put(head.buf, head.charged)
	head.buf = nil
}

// spreadMin is the smallest part the tail is split into.
const spreadMin = 1 << 20

// nextSizeLocked is the size of the next part.
func (r *parallelReader) nextSizeLocked() int64 {
	left := r.size - r.next
	n := r.partSize
	// Spread the tail over the window rather than ending on one long
	// part, in parts of at least spreadMin (smaller ones would each pay a
	// time to first byte for little).
	spread := (left + int64(r.opts.MaxConcurrency) - 1) / int64(r.opts.MaxConcurrency)
	if r.next > 0 && spread < n {
		n = max(spread, min(n, spreadMin), r.opts.MinPart)
	}
	if rest := left - n; rest > 0 && rest < r.opts.MinPart {
		// No runt part at the end: the tail in one part if a buffer
		// holds it, else in two halves.
		if left <= r.opts.MaxPart {
			n = left
		} else {
			n = (left + 1) / 2
		}
	}
	return min(n, left)
}

// scheduleLocked starts parts while the window and the budget allow.
func (r *parallelReader) scheduleLocked() {
	for r.err == nil && r.next < r.size && r.active < r.window {
		n := r.nextSizeLocked()
		if len(r.parts) > 0 && r.buffered+n > r.opts.Budget {
			return
		}
		// A reader holding no part always gets a buffer; others wait
		// for their own parts to free one when the pool is spent.
		buf, charged := r.opts.Pool.get(len(r.parts) == 0)
		if buf == nil {
			return
		}
		n = min(n, int64(len(buf))) // a part never outgrows its buffer
		p := &part{off: r.next, n: n, buf: buf[:n], charged: charged}
		r.next += n
		r.buffered += n
		r.partSize = min(2*r.partSize, r.opts.MaxPart)
		r.parts = append(r.parts, p)
		r.active++
		r.wg.Add(1)
		go r.fetch(p)
	}
}

func (r *parallelReader) signal() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *parallelReader) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	r.cancel(errClosed)
	r.wg.Wait()
	r.mu.Lock()
	if r.whole != nil {
		r.whole.Close()
	}
	for _, p := range r.parts {
		r.opts.Pool.put(p.buf, p.charged)
		p.buf = nil
	}
	r.parts = nil
	r.mu.Unlock()
	return nil
}
