package backend

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestProgressDeadlinesHang: a server that accepts requests and never
// answers costs one wait, not one per attempt: each attempt may wait
// RequestTimeout (10 s here) for headers, and there are five.
func TestProgressDeadlinesHang(t *testing.T) {
	var calls atomic.Int32
	stop := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		select {
		case <-r.Context().Done():
		case <-stop:
		}
	}))
	t.Cleanup(func() { close(stop); srv.Close() })
	opts := faultOpts()
	opts.RequestTimeout, opts.MaxAttempts = 10*time.Second, 5
	b := ProgressDeadlines(mustOpen(t, srv.URL, opts), 300*time.Millisecond, 0)
	isolateAWS(t)
	setAWSKeys(t, "access", "secret")
	s3 := ProgressDeadlines(mustOpen(t, "s3://cache?region="+testRegion+"&endpoint="+srv.URL, opts), 300*time.Millisecond, 0)
	for name, f := range map[string]func() error{
		"List": func() error {
			return s3.List(context.Background(), ".narinfo", func(string) error { return nil })
		},
		"Get": func() error { _, err := b.Get(context.Background(), "x.narinfo"); return err },
		"GetRange": func() error {
			_, err := b.GetRange(context.Background(), "nar/x.nar", 0, 10)
			return err
		},
		"Stat": func() error { _, err := b.Stat(context.Background(), "x.narinfo"); return err },
		"Put": func() error {
			return b.(Writer).Put(context.Background(), "x.narinfo", strings.NewReader("abc"), 3, "")
		},
	} {
		err := withinShort(t, name, f)
		checkDeadlineErr(t, err, "", nil)
	}
}

// TestProgressDeadlineMoves: progress moves the deadline by its bytes at
// minRate; without progress it ends.
func TestProgressDeadlineMoves(t *testing.T) {
	ctx, progress, cancel := WithProgressDeadline(context.Background(), 200*time.Millisecond, 1000)
	defer cancel()
	for range 6 {
		time.Sleep(100 * time.Millisecond)
		progress(500) // half a second more each time
	}
	if err := ctx.Err(); err != nil {
		t.Fatalf("ended although progress was made: %v", err)
	}
	if d, ok := ctx.Deadline(); !ok || time.Until(d) < time.Second {
		t.Errorf("deadline %v from now, want about 2.4 s more", time.Until(d))
	}
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("did not end without progress")
	}
	if !errors.Is(ctx.Err(), context.DeadlineExceeded) || !errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
		t.Errorf("Err %v, Cause %v, want DeadlineExceeded", ctx.Err(), context.Cause(ctx))
	}

	parent, stop := context.WithCancel(context.Background())
	ctx, _, cancel = WithProgressDeadline(parent, time.Hour, 0)
	defer cancel()
	stop()
	<-ctx.Done()
	if !errors.Is(ctx.Err(), context.Canceled) {
		t.Errorf("Err after the parent's cancel: %v", ctx.Err())
	}
}

// TestProgressDeadlinesBody: a body that keeps coming outlives the wait;
// its context ends when it is closed.
func TestProgressDeadlinesBody(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "800000")
		w.WriteHeader(http.StatusOK)
		chunk := make([]byte, 100000)
		for range 8 {
			w.Write(chunk)
			w.(http.Flusher).Flush()
			time.Sleep(50 * time.Millisecond)
		}
	}))
	t.Cleanup(srv.Close)
	b := ProgressDeadlines(mustOpen(t, srv.URL, faultOpts()), 150*time.Millisecond, 0)
	o, err := b.Get(context.Background(), "nar/x.nar")
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, o.Body)
	o.Body.Close()
	if err != nil || n != 800000 {
		t.Fatalf("read %d bytes: %v", n, err)
	}
}
