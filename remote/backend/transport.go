package backend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"
)

// guardTransport enforces the never-hang rules below any client, including
// the AWS SDK's and injected test transports:
//   - no response headers within headerTimeout ⇒ the attempt fails with
//     ErrTimeout (a net.Error-style Timeout, so the SDK retries it too);
//   - a body Read that makes no progress for stallTimeout ⇒ ErrStalled;
//   - a body slower than minRate, measured over rateWindow of time spent
//     inside Read ⇒ ErrStalled (a trickle is a stall too);
//   - a GET body that ends before Content-Length ⇒ io.ErrUnexpectedEOF
//     (net/http checks this itself, fakes and proxies may not).
type guardTransport struct {
	base          http.RoundTripper
	headerTimeout time.Duration
	stallTimeout  time.Duration
	minRate       int64 // bytes per second; 0 = no floor
	rateWindow    time.Duration
}

// timeoutError is ErrTimeout/ErrStalled dressed as a net.Error so that the
// AWS SDK's retryer classifies it as retryable.
type timeoutError struct{ err error }

func (e *timeoutError) Error() string   { return e.err.Error() }
func (e *timeoutError) Unwrap() error   { return e.err }
func (e *timeoutError) Timeout() bool   { return true }
func (e *timeoutError) Temporary() bool { return true }

func (g *guardTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancelCause(req.Context())
	hdr := time.AfterFunc(g.headerTimeout, func() { cancel(ErrTimeout) })
	resp, err := g.base.RoundTrip(req.WithContext(ctx))
	stopped := hdr.Stop()
	if err != nil {
		cancel(nil)
		if !stopped && errors.Is(context.Cause(ctx), ErrTimeout) {
			return nil, &timeoutError{err: ErrTimeout}
		}
		return nil, err
	}
	if !stopped {
		// The timer fired just as headers arrived; the body is cancelled.
		resp.Body.Close()
		cancel(nil)
		return nil, &timeoutError{err: ErrTimeout}
	}
	want := int64(-1)
	if req.Method == http.MethodGet && resp.StatusCode/100 == 2 {
		want = resp.ContentLength
	}
	body := newGuardBody(ctx, resp.Body, cancel, g.stallTimeout, want)
	if g.minRate > 0 && g.rateWindow > 0 {
		body.window = g.rateWindow
		// The bytes a window must bring; no overflow for any sane rate.
		body.floor = int64(float64(g.minRate) * g.rateWindow.Seconds())
	}
	resp.Body = body
	return resp, nil
}

// guardBody wraps a response body with stall detection and a length check.
// Only the time spent inside Read counts towards a stall: a caller that
// pauses between Reads is not a stalled server.
type guardBody struct {
	rc      io.ReadCloser
	cancel  context.CancelCauseFunc
	ctx     context.Context
	timer   *time.Timer
	timeout time.Duration
	want    int64 // expected bytes, -1 if unknown
	got     int64
	stalled atomic.Bool

	window time.Duration // of time inside Read over which floor bytes must arrive; 0 = off
	floor  int64
	inRead time.Duration // in the current window
	winGot int64         // bytes in the current window
}

func newGuardBody(ctx context.Context, rc io.ReadCloser, cancel context.CancelCauseFunc, stall time.Duration, want int64) *guardBody {
	b := &guardBody{rc: rc, cancel: cancel, ctx: ctx, timeout: stall, want: want}
	b.timer = time.AfterFunc(time.Hour, b.onStall)
	b.timer.Stop()
	return b
}

func (b *guardBody) onStall() {
	b.stalled.Store(true)
	// Cancelling the request context unblocks a Read in net/http; closing
	// the body covers transports that ignore the context.
	b.cancel(ErrStalled)
	b.rc.Close()
}

func (b *guardBody) Read(p []byte) (int, error) {
	start := time.Now()
	b.timer.Reset(b.timeout)
	n, err := b.rc.Read(p)
	b.timer.Stop()
	b.got += int64(n)
	if b.stalled.Load() {
		return n, &timeoutError{err: ErrStalled}
	}
	if b.window > 0 && err == nil {
		b.inRead += time.Since(start)
		b.winGot += int64(n)
		if b.inRead >= b.window {
			if b.winGot < b.floor {
				got, in := b.winGot, b.inRead
				b.stalled.Store(true)
				b.cancel(ErrStalled)
				b.rc.Close()
				return n, &timeoutError{err: fmt.Errorf("%w: %d bytes in %v, slower than the minimum rate of %d bytes/s",
					ErrStalled, got, in.Round(time.Millisecond), int64(float64(b.floor)/b.window.Seconds()))}
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
