package backend

// Lock order: uploadBody.mu and lastAttempt.mu are leaves, never held
// together (they belong to different requests' state).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// guardTransport enforces the never-hang rules below any client, including
// the AWS SDK's and injected test transports:
//   - no response headers within headerTimeout, or before the request
//     context's deadline if that is sooner ⇒ the attempt fails with
//     ErrTimeout (a net.Error-style Timeout, so the SDK retries it too;
//     it also wraps context.DeadlineExceeded when the deadline was hit);
//   - a body Read that makes no progress for stallTimeout, or Reads that
//     deliver less than minRate over rateWindow of reading ⇒ ErrStalled;
//   - a GET body that ends before Content-Length ⇒ io.ErrUnexpectedEOF
//     (net/http checks this itself, fakes and proxies may not).
type guardTransport struct {
	base          http.RoundTripper
	headerTimeout time.Duration
	stallTimeout  time.Duration
	minRate       int64         // bytes/second a body must sustain
	rateWindow    time.Duration // over this much time spent inside Read
}

// timeoutError is ErrTimeout/ErrStalled dressed as a net.Error so that the
// AWS SDK's retryer classifies it as retryable.
type timeoutError struct{ err error }

func (e *timeoutError) Error() string   { return e.err.Error() }
func (e *timeoutError) Unwrap() error   { return e.err }
func (e *timeoutError) Timeout() bool   { return true }
func (e *timeoutError) Temporary() bool { return true }

func (g *guardTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	parent := req.Context()
	// One deadline per operation: an attempt gets at most the time the
	// caller has left, so the timeout that fires is ours (ErrTimeout,
	// naming the cause) rather than a bare context error.
	timeout, byDeadline := g.headerTimeout, false
	if dl, ok := parent.Deadline(); ok {
		if left := time.Until(dl); left < timeout {
			timeout, byDeadline = left, true
		}
	}
	headerTimeout := func() error {
		if byDeadline || errors.Is(parent.Err(), context.DeadlineExceeded) {
			return &timeoutError{err: atDeadline(ErrTimeout)}
		}
		return &timeoutError{err: ErrTimeout}
	}
	ctx, cancel := context.WithCancelCause(parent)
	hdr := time.AfterFunc(timeout, func() { cancel(ErrTimeout) })
	r2 := req.WithContext(ctx)
	var ub *uploadBody
	if req.Body != nil && req.Body != http.NoBody {
		// An upload: the header timeout counts from the last body
		// byte taken, not from the start of the request.
		ub = &uploadBody{rc: req.Body, timer: hdr, timeout: g.headerTimeout, deadline: parent, armed: true}
		r2.Body = ub
		r2.GetBody = nil
	}
	resp, err := g.base.RoundTrip(r2)
	var stopped bool
	if ub != nil {
		stopped = ub.finish()
	} else {
		stopped = hdr.Stop()
	}
	if err != nil {
		cancel(nil)
		if !stopped && errors.Is(context.Cause(ctx), ErrTimeout) || errors.Is(parent.Err(), context.DeadlineExceeded) {
			err = headerTimeout()
		}
		recordAttempt(parent, err)
		return nil, err
	}
	if !stopped {
		// The timer fired just as headers arrived; the body is cancelled.
		resp.Body.Close()
		cancel(nil)
		err = headerTimeout()
		recordAttempt(parent, err)
		return nil, err
	}
	want := int64(-1)
	if req.Method == http.MethodGet && resp.StatusCode/100 == 2 {
		want = resp.ContentLength
	}
	resp.Body = newGuardBody(ctx, resp.Body, cancel, g.stallTimeout, want, g.minRate, g.rateWindow)
	return resp, nil
}

// uploadBody is a request body under guardTransport. The header timer is
// stopped while the transport waits on Read (time spent producing the
// body is the caller's, bounded by its context) and re-armed after each
// Read, so it fires only when the server takes no bytes, or sends no
// headers, for headerTimeout (or until the deadline, if sooner).
type uploadBody struct {
	rc       io.ReadCloser
	timer    *time.Timer
	timeout  time.Duration
	deadline context.Context

	mu    sync.Mutex
	armed bool // the timer is running (it starts so)
	fired bool // the timer fired while armed
	done  bool // RoundTrip returned; the timer is no longer ours to arm
}

func (u *uploadBody) Read(p []byte) (int, error) {
	u.disarm()
	n, err := u.rc.Read(p)
	u.mu.Lock()
	if !u.done && !u.fired {
		d := u.timeout
		if dl, ok := u.deadline.Deadline(); ok {
			d = min(d, time.Until(dl))
		}
		u.timer.Reset(max(d, 0))
		u.armed = true
	}
	u.mu.Unlock()
	return n, err
}

func (u *uploadBody) disarm() {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.armed && !u.done {
		if !u.timer.Stop() {
			u.fired = true
		}
		u.armed = false
	}
}

func (u *uploadBody) Close() error { return u.rc.Close() }

// finish marks RoundTrip as returned and stops the timer; it reports
// whether the timer never fired (hdr.Stop's answer without uploads).
func (u *uploadBody) finish() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.armed && !u.done && !u.timer.Stop() {
		u.fired = true
	}
	u.armed, u.done = false, true
	return !u.fired
}

// lastAttempt holds the error of a call's latest failed attempt. The AWS
// SDK replaces a transport error with a bare "canceled, context deadline
// exceeded" once the context is done, which would hide why the time ran
// out (e.g. ErrTimeout); the s3 backend puts the cause back from here.
type lastAttempt struct {
	mu  sync.Mutex
	err error
}

type lastAttemptKey struct{}

// withLastAttempt returns a context whose attempts record their failures
// in the returned holder.
func withLastAttempt(ctx context.Context) (context.Context, *lastAttempt) {
	la := &lastAttempt{}
	return context.WithValue(ctx, lastAttemptKey{}, la), la
}

func recordAttempt(ctx context.Context, err error) {
	if la, ok := ctx.Value(lastAttemptKey{}).(*lastAttempt); ok {
		la.mu.Lock()
		la.err = err
		la.mu.Unlock()
	}
}

// explain adds the last attempt's failure to err when the deadline ended
// the call and err does not already carry it.
func (la *lastAttempt) explain(err error) error {
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	la.mu.Lock()
	last := la.err
	la.mu.Unlock()
	if last == nil || errors.Is(err, last) {
		return err
	}
	return fmt.Errorf("%w (last attempt: %w)", err, last)
}

// guardBody wraps a response body with stall detection, a minimum
// throughput and a length check. Only the time spent inside Read counts
// towards a stall or the rate: a caller that pauses between Reads is not a
// stalled server.
//
// The stall timer catches a Read that gets nothing; the rate window
// catches a server that trickles, where every Read completes (with a byte
// or two) before the timer fires. It is checked as each Read completes,
// once the Reads have spent rateWindow in total: a body that completes
// sooner is never judged, however small.
type guardBody struct {
	rc      io.ReadCloser
	cancel  context.CancelCauseFunc
	ctx     context.Context
	timer   *time.Timer
	timeout time.Duration
	want    int64 // expected bytes, -1 if unknown
	got     int64
	stalled atomic.Bool

	window  time.Duration // 0: no rate check
	need    int64         // bytes due per window
	inRead  time.Duration // time spent inside Read in the current window
	winGot  int64         // bytes received in the current window
	rateErr error         // sticky once the rate check failed
}

func newGuardBody(ctx context.Context, rc io.ReadCloser, cancel context.CancelCauseFunc, stall time.Duration, want, minRate int64, window time.Duration) *guardBody {
	b := &guardBody{rc: rc, cancel: cancel, ctx: ctx, timeout: stall, want: want}
	if minRate > 0 && window > 0 {
		b.window = window
		// In floats, then clamped: a huge MinRate must not wrap.
		need := float64(minRate) * window.Seconds()
		b.need = math.MaxInt64
		if need < math.MaxInt64 {
			b.need = int64(need)
		}
	}
	b.timer = time.AfterFunc(time.Hour, b.onStall)
	b.timer.Stop()
	return b
}

func (b *guardBody) onStall() {
	b.stalled.Store(true)
	b.abort(ErrStalled)
}

// abort cancels the request and closes the body. Cancelling the request
// context unblocks a Read in net/http; closing the body covers transports
// that ignore the context.
func (b *guardBody) abort(cause error) {
	b.cancel(cause)
	b.rc.Close()
}

func (b *guardBody) Read(p []byte) (int, error) {
	if b.rateErr != nil {
		return 0, b.rateErr
	}
	start := time.Now()
	b.timer.Reset(b.timeout)
	n, err := b.rc.Read(p)
	b.timer.Stop()
	if n < 0 || n > len(p) {
		// A broken transport; do not let it corrupt the counts.
		b.abort(nil)
		return 0, fmt.Errorf("body Read returned %d for a %d-byte buffer", n, len(p))
	}
	b.got += int64(n)
	if b.stalled.Load() {
		return n, &timeoutError{err: ErrStalled}
	}
	if err == nil && b.window > 0 {
		b.inRead += time.Since(start)
		b.winGot += int64(n)
		if b.inRead >= b.window {
			if b.winGot < b.need {
				b.rateErr = &timeoutError{err: fmt.Errorf("%w: %d bytes in %v of reading, below the minimum of %d bytes per %v",
					ErrStalled, b.winGot, b.inRead.Round(time.Millisecond), b.need, b.window)}
				b.abort(ErrStalled)
				return n, b.rateErr
			}
			b.inRead, b.winGot = 0, 0
		}
	}
	if err == io.EOF && b.want >= 0 && b.got < b.want {
		return n, io.ErrUnexpectedEOF
	}
	if err != nil && err != io.EOF {
		if c := context.Cause(b.ctx); errors.Is(c, ErrStalled) || errors.Is(c, ErrTimeout) {
			return n, &timeoutError{err: c}
		}
	}
	return n, err
}

func (b *guardBody) Close() error {
	b.timer.Stop()
	err := b.rc.Close()
	b.cancel(nil)
	return err
}
