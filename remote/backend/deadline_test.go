package backend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// deadlineCall runs f with a context that ends after deadline and returns
// its error and how long it took. A call that outlives the deadline by
// far is a hang.
func deadlineCall(t *testing.T, deadline time.Duration, f func(ctx context.Context) error) (time.Duration, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	start := time.Now()
	err := within(t, "call with a deadline", func() error { return f(ctx) })
	return time.Since(start), err
}

// checkDeadlineErr asserts that err says both that the deadline stopped
// the call and why the attempts failed.
func checkDeadlineErr(t *testing.T, err error, cause string, causeErr error) {
	t.Helper()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err %v does not wrap context.DeadlineExceeded", err)
	}
	if cause != "" && (err == nil || !strings.Contains(err.Error(), cause)) {
		t.Errorf("err %v does not name the cause %q", err, cause)
	}
	if causeErr != nil && !errors.Is(err, causeErr) {
		t.Errorf("err %v does not wrap %v", err, causeErr)
	}
}

// TestHTTPDeadlineCoversRetries: the caller's deadline bounds the whole
// operation, and a wait that cannot fit is not started.
func TestHTTPDeadlineCoversRetries(t *testing.T) {
	t.Run("Retry-After beyond the deadline", func(t *testing.T) {
		var calls atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			calls.Add(1)
			w.Header().Set("Retry-After", "30")
			http.Error(w, "busy", http.StatusServiceUnavailable)
		}))
		t.Cleanup(srv.Close)
		opts := faultOpts()
		opts.RetryMaxDelay = time.Minute // the server's 30s is honoured, were there time
		b := mustOpen(t, srv.URL, opts)
		took, err := deadlineCall(t, 2*time.Second, func(ctx context.Context) error {
			_, err := b.Get(ctx, "nix-cache-info")
			return err
		})
		if took > time.Second {
			t.Errorf("took %v; a 30s Retry-After with a 2s deadline must fail at once", took)
		}
		checkDeadlineErr(t, err, "503", nil)
		if calls.Load() != 1 {
			t.Errorf("%d requests, want 1", calls.Load())
		}
	})
	t.Run("backoff beyond the deadline", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "broken", http.StatusInternalServerError)
		}))
		t.Cleanup(srv.Close)
		opts := faultOpts()
		opts.RetryBaseDelay = 5 * time.Second
		b := mustOpen(t, srv.URL, opts)
		for _, op := range []struct {
			name string
			f    func(ctx context.Context) error
		}{
			{"get", func(ctx context.Context) error { _, err := b.Get(ctx, "x"); return err }},
			{"stat", func(ctx context.Context) error { _, err := b.Stat(ctx, "x"); return err }},
			{"range", func(ctx context.Context) error { _, err := b.GetRange(ctx, "x", 0, 10); return err }},
		} {
			took, err := deadlineCall(t, time.Second, op.f)
			if took > 500*time.Millisecond {
				t.Errorf("%s took %v; a 5s backoff with a 1s deadline must fail at once", op.name, took)
			}
			checkDeadlineErr(t, err, "500", nil)
		}
	})
	t.Run("blackholed server", func(t *testing.T) {
		// RequestTimeout alone would allow 5 x 10s; the deadline cuts
		// the first attempt short, and the error still says ErrTimeout.
		done := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-done:
			}
		}))
		t.Cleanup(func() { close(done); srv.Close() })
		opts := faultOpts()
		opts.RequestTimeout = 10 * time.Second
		opts.MaxAttempts = 5
		b := mustOpen(t, srv.URL, opts)
		took, err := deadlineCall(t, 500*time.Millisecond, func(ctx context.Context) error {
			_, err := b.Get(ctx, "nix-cache-info")
			return err
		})
		if took > 2*time.Second {
			t.Errorf("took %v with a 500ms deadline", took)
		}
		checkDeadlineErr(t, err, "", ErrTimeout)
	})
}

// TestResumeDeadline: GetRange's resumptions after a body failure share
// the caller's deadline and report the body's failure.
func TestResumeDeadline(t *testing.T) {
	srv := stallServer(t, 1000)
	opts := faultOpts()
	opts.RetryBaseDelay = 5 * time.Second
	b := mustOpen(t, srv.URL, opts)
	took, err := deadlineCall(t, 2*time.Second, func(ctx context.Context) error {
		_, err := readRange(ctx, b, "nar/x.nar", 0, int64(len(payload)))
		return err
	})
	if took > 1500*time.Millisecond {
		t.Errorf("took %v; the resume backoff (5s) cannot fit in a 2s deadline", took)
	}
	checkDeadlineErr(t, err, "", ErrStalled)
}

func TestS3DeadlineCoversRetries(t *testing.T) {
	isolateAWS(t)
	setAWSKeys(t, "AKIAFAKE", "fakesecret")
	t.Run("SlowDown with a long backoff", func(t *testing.T) {
		srv, calls := fakeS3(t, func(n int32, w http.ResponseWriter, r *http.Request) {
			s3XMLError(w, 503, "SlowDown")
		})
		opts := faultOpts()
		opts.RetryBaseDelay = 5 * time.Second
		b := mustOpen(t, "s3://bucket?endpoint="+srv.URL, opts)
		took, err := deadlineCall(t, time.Second, func(ctx context.Context) error {
			_, err := b.Get(ctx, "nix-cache-info")
			return err
		})
		if took > 500*time.Millisecond {
			t.Errorf("took %v; a 5s backoff with a 1s deadline must fail at once", took)
		}
		checkDeadlineErr(t, err, "SlowDown", nil)
		if calls.Load() != 1 {
			t.Errorf("%d requests, want 1", calls.Load())
		}
	})
	t.Run("x-amz-retry-after beyond the deadline", func(t *testing.T) {
		srv, _ := fakeS3(t, func(n int32, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Amz-Retry-After", "4000")
			s3XMLError(w, 503, "SlowDown")
		})
		b := mustOpen(t, "s3://bucket?endpoint="+srv.URL, faultOpts())
		took, err := deadlineCall(t, time.Second, func(ctx context.Context) error {
			_, err := b.Stat(ctx, "x.narinfo")
			return err
		})
		if took > 500*time.Millisecond {
			t.Errorf("took %v; a 4s x-amz-retry-after with a 1s deadline must fail at once", took)
		}
		checkDeadlineErr(t, err, "SlowDown", nil)
	})
	t.Run("blackholed endpoint", func(t *testing.T) {
		done := make(chan struct{})
		srv, _ := fakeS3(t, func(n int32, w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-done:
			}
		})
		t.Cleanup(func() { close(done) })
		opts := faultOpts()
		opts.RequestTimeout = 10 * time.Second
		b := mustOpen(t, "s3://bucket?endpoint="+srv.URL, opts)
		took, err := deadlineCall(t, 500*time.Millisecond, func(ctx context.Context) error {
			_, err := b.Get(ctx, "nix-cache-info")
			return err
		})
		if took > 2*time.Second {
			t.Errorf("took %v with a 500ms deadline", took)
		}
		checkDeadlineErr(t, err, "", ErrTimeout)
	})
}

// trickleServer announces size bytes and sends them one at a time, every
// interval, until the client goes away or the test ends.
func trickleServer(t *testing.T, size int, every time.Duration) *httptest.Server {
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(size))
		w.WriteHeader(200)
		rc := http.NewResponseController(w)
		rc.Flush()
		tick := time.NewTicker(every)
		defer tick.Stop()
		for range size {
			select {
			case <-r.Context().Done():
				return
			case <-done:
				return
			case <-tick.C:
			}
			w.Write([]byte{'x'})
			rc.Flush()
		}
	}))
	t.Cleanup(func() { close(done); srv.Close() })
	return srv
}

// TestTrickleIsStall: a server that keeps every Read alive with a byte at
// a time is below MinRate and fails with ErrStalled instead of blocking
// the reader for hours.
func TestTrickleIsStall(t *testing.T) {
	for _, tc := range []struct {
		name  string
		size  int
		every time.Duration
		stall time.Duration
	}{
		// Scaled-down versions of a byte per 100ms on a NAR and a byte
		// per 2s on a narinfo: each Read returns before StallTimeout.
		{"nar", 1 << 20, 20 * time.Millisecond, 200 * time.Millisecond},
		{"small object", 100, 300 * time.Millisecond, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := trickleServer(t, tc.size, tc.every)
			opts := faultOpts()
			opts.StallTimeout = tc.stall
			opts.RateWindow = 500 * time.Millisecond // capped at StallTimeout
			b := mustOpen(t, srv.URL, opts)
			err := withinShort(t, "Get of a trickle", func() error {
				_, _, err := readObject(context.Background(), b, "nar/x.nar")
				return err
			})
			if !errors.Is(err, ErrStalled) || !strings.Contains(err.Error(), "minimum") {
				t.Errorf("Get of a trickling body: %v, want ErrStalled below the minimum rate", err)
			}
			err = withinShort(t, "GetRange of a trickle", func() error {
				_, err := readRange(context.Background(), b, "nar/x.nar", 0, int64(tc.size))
				return err
			})
			if !errors.Is(err, ErrStalled) {
				t.Errorf("GetRange of a trickling body: %v, want ErrStalled", err)
			}
		})
	}
	t.Run("s3", func(t *testing.T) {
		isolateAWS(t)
		setAWSKeys(t, "AKIAFAKE", "fakesecret")
		srv := trickleServer(t, 1<<20, 20*time.Millisecond)
		b := mustOpen(t, "s3://bucket?endpoint="+srv.URL, faultOpts())
		err := withinShort(t, "s3 Get of a trickle", func() error {
			_, _, err := readObject(context.Background(), b, "nar/x.nar")
			return err
		})
		if !errors.Is(err, ErrStalled) {
			t.Errorf("S3 Get of a trickling body: %v, want ErrStalled", err)
		}
	})
}

// TestMinRateSparesFastSmallBodies: a body that completes within
// RateWindow is never judged, however far below MinRate its byte count is.
func TestMinRateSparesFastSmallBodies(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("StoreDir: /nix/store\n"))
	}))
	t.Cleanup(srv.Close)
	opts := faultOpts()
	opts.MinRate = 1 << 40
	b := mustOpen(t, srv.URL, opts)
	for i := range 20 {
		if data, err := ReadAll(context.Background(), b, "nix-cache-info", 100); err != nil || len(data) != 21 {
			t.Fatalf("read %d: %q, %v", i, data, err)
		}
	}
}

// TestGuardBodyRateWindow drives guardBody directly: only time inside
// Read counts, and the window resets once a window's worth arrived.
func TestGuardBodyRateWindow(t *testing.T) {
	slow := &pacedReader{delay: 30 * time.Millisecond, chunk: 1}
	_, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	b := newGuardBody(context.Background(), slow, cancel, time.Second, -1, 1000, 100*time.Millisecond)
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		_, err = b.Read(make([]byte, 10))
	}
	if !errors.Is(err, ErrStalled) {
		t.Fatalf("1 byte per 30ms against 1000 B/s: %v, want ErrStalled", err)
	}
	var te interface{ Timeout() bool }
	if !errors.As(err, &te) || !te.Timeout() {
		t.Errorf("rate stall %v is not a Timeout() error (the SDK would not retry it)", err)
	}
	if _, err2 := b.Read(make([]byte, 10)); !errors.Is(err2, ErrStalled) {
		t.Errorf("Read after a rate stall: %v, want ErrStalled again", err2)
	}

	// Fast reads with long pauses between them are fine.
	fast := &pacedReader{chunk: 100}
	b = newGuardBody(context.Background(), fast, cancel, time.Second, -1, 1000, 20*time.Millisecond)
	for i := range 5 {
		if _, err := b.Read(make([]byte, 100)); err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
		time.Sleep(30 * time.Millisecond) // caller time, not server time
	}
}

// pacedReader yields chunk bytes per Read after delay, forever.
type pacedReader struct {
	delay time.Duration
	chunk int
}

func (p *pacedReader) Read(b []byte) (int, error) {
	time.Sleep(p.delay)
	return min(p.chunk, len(b)), nil
}

func (p *pacedReader) Close() error { return nil }

// withinShort is within with a short ceiling, for calls that must end in
// about a second: a regression fails fast instead of at hangCeiling.
func withinShort(t *testing.T, what string, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(5 * time.Second):
		t.Fatalf("%s did not return within 5s", what)
		return nil
	}
}

var _ io.ReadCloser = (*pacedReader)(nil)
