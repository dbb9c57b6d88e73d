package backend

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// deadlineOpts are the defaults a user gets, but for a 1 s timeout.
func deadlineOpts() Options {
	return Options{RequestTimeout: time.Second, StallTimeout: time.Second, NetrcPath: "/nonexistent"}
}

// One deadline per operation, retries included: a server that accepts
// connections and never answers costs the caller its deadline, not
// MaxAttempts request timeouts plus backoffs.
func TestDeadlineCoversRetriesBlackhole(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, never answered
		}
	}()
	b := mustOpen(t, "http://"+ln.Addr().String(), Options{RequestTimeout: 2 * time.Second, StallTimeout: 2 * time.Second, NetrcPath: "/nonexistent"})
	ctx, cancel := context.WithTimeout(context.Background(), 2500*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = within(t, "get", func() error { _, err := ReadAll(ctx, b, "x.narinfo", 100); return err })
	if d := time.Since(start); d > 3500*time.Millisecond {
		t.Errorf("a blackholed server answered after %v with a 2.5 s deadline", d)
	}
	if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, ErrTimeout) {
		t.Errorf("err = %v, want a deadline or timeout", err)
	}
}

// 503 with Retry-After: 30 is not waited out when the deadline is closer:
// the caller hears the 503 at once.
func TestRetryAfterBeyondDeadline(t *testing.T) {
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		w.Header().Set("Retry-After", "30")
		http.Error(w, "busy", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	b := mustOpen(t, srv.URL, deadlineOpts())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	err := within(t, "get", func() error { _, err := b.Get(ctx, "x.narinfo"); return err })
	if d := time.Since(start); d > time.Second {
		t.Errorf("took %v: a Retry-After past the deadline was waited on", d)
	}
	if !errors.Is(err, context.DeadlineExceeded) || !contains(err, "503") {
		t.Errorf("err = %v, want the 503 and DeadlineExceeded", err)
	}
	if calls != 1 {
		t.Errorf("%d requests, want 1", calls)
	}
}

func contains(err error, s string) bool { return err != nil && strings.Contains(err.Error(), s) }

// A body that trickles a byte every 100 ms never trips the stall timer;
// the minimum rate makes it a stall.
func TestTrickleIsAStall(t *testing.T) {
	for _, size := range []int{1 << 20, 600} { // a NAR, a narinfo
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", strconv.Itoa(size))
			for range size {
				if _, err := w.Write([]byte{'x'}); err != nil {
					return
				}
				w.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
					return
				case <-time.After(100 * time.Millisecond):
				}
			}
		}))
		b := mustOpen(t, srv.URL, deadlineOpts())
		start := time.Now()
		err := within(t, "read", func() error {
			obj, err := b.Get(context.Background(), "x")
			if err != nil {
				return err
			}
			defer obj.Body.Close()
			buf := make([]byte, 64<<10)
			for {
				if _, err := obj.Body.Read(buf); err != nil {
					return err
				}
			}
		})
		if !errors.Is(err, ErrStalled) {
			t.Errorf("%d-byte trickle: %v, want ErrStalled", size, err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("%d-byte trickle detected after %v (window 1 s)", size, d)
		}
		srv.Close()
	}
}

// A small body that arrives at once is never a stall, however slow the
// caller.
func TestSmallFastBodyIsNotAStall(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("StoreDir: /nix/store\n")) }))
	defer srv.Close()
	b := mustOpen(t, srv.URL, deadlineOpts())
	obj, err := b.Get(context.Background(), "nix-cache-info")
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Body.Close()
	time.Sleep(1200 * time.Millisecond)
	buf := make([]byte, 100)
	if n, err := obj.Body.Read(buf); n == 0 && err != nil {
		t.Errorf("read: %v", err)
	}
}

// A FIFO (or another non-regular file) in a file:// cache is refused at
// once: opening it for reading would wait for a writer forever.
func TestFileBackendRefusesFIFOs(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(dir, "x.narinfo"), 0o644); err != nil {
		t.Skip(err)
	}
	os.WriteFile(filepath.Join(dir, "ok.narinfo"), []byte("x"), 0o644)
	b := mustOpen(t, "file://"+dir, Options{})
	ctx := context.Background()
	if err := within(t, "get", func() error { _, err := b.Get(ctx, "x.narinfo"); return err }); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get of a FIFO: %v, want ErrNotFound", err)
	}
	if err := within(t, "stat", func() error { _, err := b.Stat(ctx, "x.narinfo"); return err }); !errors.Is(err, ErrNotFound) {
		t.Errorf("Stat of a FIFO: %v, want ErrNotFound", err)
	}
	if err := within(t, "range", func() error { _, err := b.GetRange(ctx, "x.narinfo", 0, 1); return err }); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetRange of a FIFO: %v, want ErrNotFound", err)
	}
	var keys []string
	within(t, "list", func() error {
		return b.List(ctx, ".narinfo", func(k string) error { keys = append(keys, k); return nil })
	})
	if data, err := ReadAll(ctx, b, "ok.narinfo", 10); err != nil || string(data) != "x" {
		t.Errorf("a regular file next to the FIFO: %q %v", data, err)
	}
}
