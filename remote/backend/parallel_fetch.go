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
	"time"
)

// fetch downloads one part, resuming its body after failures.
func (r *parallelReader) fetch(p *part) {
	defer r.wg.Done()
	err := r.fetchPart(p)
	r.mu.Lock()
	r.active--
	if err != nil {
		if r.err == nil {
			r.err = err
			// Nothing after a hole can be delivered: stop the rest.
			r.cancel(err)
		}
	} else {
		p.done = true
		// The reader may be waiting on an earlier part: keep the
		// window full without it.
		r.scheduleLocked()
	}
	r.mu.Unlock()
	r.signal()
}

// permanent errors end a part at once: retrying cannot change them.
func permanent(err error) bool {
	for _, e := range []error{ErrNotFound, ErrAuth, ErrRange, ErrInvalidKey, ErrUnsupported, errClosed} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// chunk is how much a worker reads before publishing progress, so the
// reader can stream the head part as it arrives.
const chunk = 256 << 10

func (r *parallelReader) fetchPart(p *part) error {
	var got int64 // bytes in p.buf; only this goroutine writes it
	failures := 0
	for got < p.n {
		var rc io.ReadCloser
		var err error
		if p.off == 0 && got == 0 && !r.isOpened() {
			// The first request: a server that ignores Range answers it
			// with the whole object, which is then read as it comes
			// instead of thrown away and asked for again.
			var whole bool
			rc, whole, err = GetRangeOrWhole(r.ctx, r.b, r.key, 0, p.n)
			if whole {
				r.useWhole(rc)
				return nil
			}
		} else {
			rc, err = r.b.GetRange(r.ctx, r.key, p.off+got, p.n-got)
		}
		if err != nil {
			return r.partError(p, err)
		}
		r.mu.Lock()
		if !r.opened {
			r.opened = true
			r.window = r.opts.MaxConcurrency
			r.scheduleLocked()
		}
		r.mu.Unlock()
		start := got
		for got < p.n && err == nil {
			var n int
			n, err = rc.Read(p.buf[got:min(got+chunk, p.n)])
			if n > 0 {
				got += int64(n)
				r.mu.Lock()
				p.filled = got
				head := len(r.parts) > 0 && r.parts[0] == p
				r.mu.Unlock()
				if head {
					r.signal()
				}
			}
			if err == io.EOF && got < p.n {
				err = io.ErrUnexpectedEOF
			}
		}
		rc.Close()
		if got == p.n {
			return nil
		}
		if cerr := r.ctx.Err(); cerr != nil || permanent(err) {
			return r.partError(p, err)
		}
		if got > start {
			failures = 0
		}
		failures++
		if failures > r.opts.MaxResumes {
			return r.partError(p, fmt.Errorf("%d failures in a row without progress: %w", failures, err))
		}
		d := backoff(r.opts.RetryBaseDelay, 30*time.Second, failures)
		if err := sleepBeforeRetry(r.ctx, d, err); err != nil {
			return r.partError(p, err)
		}
	}
	return nil
}

func (r *parallelReader) isOpened() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.opened
}

// useWhole makes the server's whole-object answer the reader's source in
// place of the parts: the first and only part so far is dropped and
// nothing more is scheduled.
func (r *parallelReader) useWhole(body io.ReadCloser) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.whole = body
	r.opened = true
	r.next = r.size
	for _, q := range r.parts {
		r.opts.Pool.put(q.buf, q.charged)
		q.buf = nil
	}
	r.parts = nil
	r.buffered = 0
}

// partError says which part failed; the cause keeps its sentinels. After
// the context ended, the cause of that is what matters.
func (r *parallelReader) partError(p *part, err error) error {
	if cerr := r.ctx.Err(); cerr != nil {
		cause := context.Cause(r.ctx)
		if errors.Is(cerr, context.DeadlineExceeded) {
			err = atDeadline(err)
		} else if cause != nil && !errors.Is(err, cause) {
			err = fmt.Errorf("%w (%v)", cause, err)
		}
	}
	return fmt.Errorf("parallel range %d-%d: %w", p.off, p.off+p.n-1, err)
}
