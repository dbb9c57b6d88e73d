package backend

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Fault tests use small timeouts and a 1ms retry base so that they run
// fast; they assert outcomes, and use a generous ceiling only to turn a
// hang into a failure instead of a stuck test binary.
const hangCeiling = 20 * time.Second

func faultOpts() Options {
	return Options{
		RequestTimeout: 200 * time.Millisecond,
		StallTimeout:   200 * time.Millisecond,
		MaxAttempts:    3,
		RetryBaseDelay: time.Millisecond,
		NetrcPath:      "/nonexistent",
	}
}

// within runs f and fails the test if it does not return by hangCeiling.
func within(t *testing.T, what string, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(hangCeiling):
		t.Fatalf("%s hung for %v", what, hangCeiling)
		return nil
	}
}

var payload = bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB

// fakeResp builds a response the way a broken server or proxy would.
func fakeResp(req *http.Request, status int, body io.Reader, length int64, hdr http.Header) *http.Response {
	if hdr == nil {
		hdr = http.Header{}
	}
	return &http.Response{
		Status: fmt.Sprintf("%d %s", status, http.StatusText(status)), StatusCode: status,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: hdr, Body: io.NopCloser(body), ContentLength: length, Request: req,
	}
}

func TestHTTPTruncatedBody(t *testing.T) {
	// At the transport: Content-Length larger than what the body yields.
	tr := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		return fakeResp(r, 200, bytes.NewReader(payload[:1000]), int64(len(payload)), nil), nil
	})
	opts := faultOpts()
	opts.HTTPClient = &http.Client{Transport: tr}
	b := mustOpen(t, "http://cache.invalid", opts)
	data, _, err := readObject(context.Background(), b, "nar/x.nar")
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("truncated body: %d bytes, err %v; want io.ErrUnexpectedEOF", len(data), err)
	}

	// A real server that closes the connection mid-body.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(len(payload)))
		w.WriteHeader(200)
		w.Write(payload[:1000])
		conn, buf, err := http.NewResponseController(w).Hijack()
		if err == nil {
			buf.Flush()
			conn.Close()
		}
	}))
	t.Cleanup(srv.Close)
	b = mustOpen(t, srv.URL, faultOpts())
	data, _, err = readObject(context.Background(), b, "nar/x.nar")
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("server closed mid-body: %d bytes, err %v; want io.ErrUnexpectedEOF", len(data), err)
	}
	if err != nil && !strings.Contains(err.Error(), "nar/x.nar") {
		t.Errorf("body error %q does not name the key", err)
	}
}

// stallServer sends headers (and first bytes of the body) then blocks
// until the client goes away or the test ends.
func stallServer(t *testing.T, sendBytes int) *httptest.Server {
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(len(payload)))
		w.WriteHeader(200)
		w.Write(payload[:sendBytes])
		http.NewResponseController(w).Flush()
		select {
		case <-r.Context().Done():
		case <-done:
		}
	}))
	t.Cleanup(func() { close(done); srv.Close() })
	return srv
}

func TestHTTPStall(t *testing.T) {
	for _, sent := range []int{0, 1000} {
		t.Run(fmt.Sprintf("after%dBytes", sent), func(t *testing.T) {
			srv := stallServer(t, sent)
			b := mustOpen(t, srv.URL, faultOpts())
			err := within(t, "Get body read", func() error {
				_, _, err := readObject(context.Background(), b, "nar/x.nar")
				return err
			})
			if !errors.Is(err, ErrStalled) {
				t.Errorf("Get of a stalled body: %v, want ErrStalled", err)
			}
			// GetRange resumes MaxAttempts times, then gives up.
			err = within(t, "GetRange read", func() error {
				_, err := readRange(context.Background(), b, "nar/x.nar", 0, int64(len(payload)))
				return err
			})
			if !errors.Is(err, ErrStalled) {
				t.Errorf("GetRange of a stalled body: %v, want ErrStalled", err)
			}
		})
	}
}

// TestStallIgnoresSlowCaller: time the caller spends between Reads is not
// a stall.
func TestStallIgnoresSlowCaller(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(payload)
	}))
	t.Cleanup(srv.Close)
	opts := faultOpts()
	opts.StallTimeout = 50 * time.Millisecond
	b := mustOpen(t, srv.URL, opts)
	obj, err := b.Get(context.Background(), "x")
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Body.Close()
	buf := make([]byte, 100)
	if _, err := io.ReadFull(obj.Body, buf); err != nil {
		t.Fatal(err)
	}
	time.Sleep(4 * opts.StallTimeout)
	rest, err := io.ReadAll(obj.Body)
	if err != nil || len(rest)+100 != len(payload) {
		t.Errorf("after a slow caller: %d bytes, %v", len(rest), err)
	}
}

func TestHTTPStallBeforeHeaders(t *testing.T) {
	var calls atomic.Int32
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		select {
		case <-r.Context().Done():
		case <-done:
		}
	}))
	t.Cleanup(func() { close(done); srv.Close() })
	opts := faultOpts()
	b := mustOpen(t, srv.URL, opts)
	err := within(t, "Get", func() error {
		_, err := b.Get(context.Background(), "nix-cache-info")
		return err
	})
	if !errors.Is(err, ErrTimeout) {
		t.Errorf("no headers: %v, want ErrTimeout", err)
	}
	if got := calls.Load(); got != int32(opts.MaxAttempts) {
		t.Errorf("%d attempts, want %d", got, opts.MaxAttempts)
	}
}

func TestHTTPRetries(t *testing.T) {
	for _, tc := range []struct {
		name     string
		failures int
		status   int
		hdr      string
		wantErr  error // nil: success after the failures
		attempts int32
	}{
		{"500 then success", 2, 500, "", nil, 3},
		{"503 then success", 1, 503, "", nil, 2},
		{"429 with Retry-After", 1, 429, "0", nil, 2},
		{"500 forever", 99, 500, "", errors.New("500"), 3},
		{"404 not retried", 99, 404, "", ErrNotFound, 1},
		{"403 is missing", 99, 403, "", ErrNotFound, 1},
		{"410 is missing", 99, 410, "", ErrNotFound, 1},
		{"401 is auth", 99, 401, "", ErrAuth, 1},
		{"407 is auth", 99, 407, "", ErrAuth, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if int(calls.Add(1)) <= tc.failures {
					if tc.hdr != "" {
						w.Header().Set("Retry-After", tc.hdr)
					}
					http.Error(w, "nope", tc.status)
					return
				}
				w.Write([]byte("StoreDir: /nix/store\n"))
			}))
			t.Cleanup(srv.Close)
			b := mustOpen(t, srv.URL, faultOpts())
			data, err := ReadAll(context.Background(), b, "nix-cache-info", 100)
			switch {
			case tc.wantErr == nil && (err != nil || string(data) != "StoreDir: /nix/store\n"):
				t.Errorf("got %q, %v; want success", data, err)
			case tc.wantErr != nil && err == nil:
				t.Errorf("succeeded; want %v", tc.wantErr)
			case tc.wantErr != nil && !errors.Is(err, tc.wantErr) && !strings.Contains(err.Error(), tc.wantErr.Error()):
				t.Errorf("err %v; want %v", err, tc.wantErr)
			}
			if got := calls.Load(); got != tc.attempts {
				t.Errorf("%d requests, want %d", got, tc.attempts)
			}
			if tc.wantErr == ErrNotFound && errors.Is(err, ErrAuth) || tc.wantErr == ErrAuth && errors.Is(err, ErrNotFound) {
				t.Errorf("%v is both ErrAuth and ErrNotFound", err)
			}
		})
	}
}

// TestHTTPRangeFallbacks: servers that ignore or botch Range.
func TestHTTPRangeFallbacks(t *testing.T) {
	ctx := context.Background()
	t.Run("200 instead of 206", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Write(payload) // Range ignored
		}))
		t.Cleanup(srv.Close)
		b := mustOpen(t, srv.URL, faultOpts())
		got, err := readRange(ctx, b, "x", 1000, 500)
		if err != nil || !bytes.Equal(got, payload[1000:1500]) {
			t.Errorf("got %d bytes, %v; want payload[1000:1500]", len(got), err)
		}
		if _, err := readRange(ctx, b, "x", int64(len(payload)), 1); !errors.Is(err, ErrRange) {
			t.Errorf("beyond end on a 200 server: %v, want ErrRange", err)
		}
	})
	t.Run("wrong Content-Range", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes 0-9/%d", len(payload)))
			w.WriteHeader(http.StatusPartialContent)
			w.Write(payload[:10])
		}))
		t.Cleanup(srv.Close)
		b := mustOpen(t, srv.URL, faultOpts())
		if _, err := readRange(ctx, b, "x", 100, 10); !errors.Is(err, ErrRange) {
			t.Errorf("mismatched Content-Range: %v, want ErrRange", err)
		}
	})
	t.Run("resume after reset", func(t *testing.T) {
		// The first response dies half way; GetRange must continue with
		// a new request for the rest and return exact bytes.
		var calls atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if calls.Add(1) == 1 {
				w.Header().Set("Content-Length", "50000")
				w.Header().Set("Content-Range", fmt.Sprintf("bytes 100-50099/%d", len(payload)))
				w.WriteHeader(http.StatusPartialContent)
				w.Write(payload[100:20100])
				conn, buf, _ := http.NewResponseController(w).Hijack()
				buf.Flush()
				conn.Close()
				return
			}
			http.ServeContent(w, r, "x", time.Time{}, bytes.NewReader(payload))
		}))
		t.Cleanup(srv.Close)
		b := mustOpen(t, srv.URL, faultOpts())
		got, err := readRange(ctx, b, "x", 100, 50000)
		if err != nil || !bytes.Equal(got, payload[100:50100]) {
			t.Errorf("resumed range: %d bytes, %v", len(got), err)
		}
		if calls.Load() != 2 {
			t.Errorf("%d requests, want 2", calls.Load())
		}
	})
	t.Run("resume answered with 200", func(t *testing.T) {
		// A 206 that dies half way, then a server (or another proxy
		// node) that ignores Range: the resumption skips to the byte it
		// needs, for GetRange and GetRangeOrWhole alike (the latter asked
		// for a range and got one; the 200 of its resumption is not a
		// whole object to hand over).
		var calls atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if calls.Add(1)%2 == 1 {
				w.Header().Set("Content-Length", "50000")
				w.Header().Set("Content-Range", fmt.Sprintf("bytes 100-50099/%d", len(payload)))
				w.WriteHeader(http.StatusPartialContent)
				w.Write(payload[100:20100])
				conn, buf, _ := http.NewResponseController(w).Hijack()
				buf.Flush()
				conn.Close()
				return
			}
			w.Write(payload) // Range ignored
		}))
		t.Cleanup(srv.Close)
		b := mustOpen(t, srv.URL, faultOpts())
		got, err := readRange(ctx, b, "x", 100, 50000)
		if err != nil || !bytes.Equal(got, payload[100:50100]) {
			t.Errorf("GetRange resumed by a 200: %d bytes, %v", len(got), err)
		}
		rc, whole, err := GetRangeOrWhole(ctx, b, "x", 100, 50000)
		if err != nil || whole {
			t.Fatalf("GetRangeOrWhole: whole %v, %v; want the range", whole, err)
		}
		got, err = io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, payload[100:50100]) {
			t.Errorf("GetRangeOrWhole resumed by a 200: %d bytes, %v", len(got), err)
		}
		if calls.Load() != 4 {
			t.Errorf("%d requests, want 4", calls.Load())
		}
	})
}

func TestHTTPNetrc(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "alice" || p != "s3cr3t" {
			w.Header().Set("WWW-Authenticate", `Basic realm="cache"`)
			http.Error(w, "who are you", http.StatusUnauthorized)
			return
		}
		w.Write([]byte("StoreDir: /nix/store\n"))
	}))
	t.Cleanup(srv.Close)
	ctx := context.Background()
	netrc := filepath.Join(t.TempDir(), "netrc")
	data := "machine other.example login bob password nope\n\nmachine 127.0.0.1\n  login alice\n  password s3cr3t\n"
	if err := os.WriteFile(netrc, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}

	opts := faultOpts()
	opts.NetrcPath = netrc
	if _, err := ReadAll(ctx, mustOpen(t, srv.URL, opts), "nix-cache-info", 100); err != nil {
		t.Errorf("with netrc: %v", err)
	}
	t.Setenv("NETRC", netrc)
	if _, err := ReadAll(ctx, mustOpen(t, srv.URL, Options{RetryBaseDelay: time.Millisecond}), "nix-cache-info", 100); err != nil {
		t.Errorf("with $NETRC: %v", err)
	}
	_, err := ReadAll(ctx, mustOpen(t, srv.URL, faultOpts()), "nix-cache-info", 100)
	if !errors.Is(err, ErrAuth) {
		t.Errorf("without netrc: %v, want ErrAuth", err)
	}
	// Credentials in the URL work too, and never show in String().
	withUser := strings.Replace(srv.URL, "http://", "http://alice:s3cr3t@", 1)
	b := mustOpen(t, withUser, faultOpts())
	if _, err := ReadAll(ctx, b, "nix-cache-info", 100); err != nil {
		t.Errorf("with URL userinfo: %v", err)
	}
	if strings.Contains(b.String(), "s3cr3t") {
		t.Errorf("String() leaks the password: %s", b)
	}
}

// fakeS3 is an httptest server speaking just enough S3 (path-style GET) to
// inject faults: handler gets the request number (from 1).
func fakeS3(t *testing.T, handler func(n int32, w http.ResponseWriter, r *http.Request)) (*httptest.Server, *atomic.Int32) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handler(calls.Add(1), w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, &calls
}

func s3XMLError(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>injected</Message><RequestId>1</RequestId></Error>`, code)
}

func TestS3FakeFaults(t *testing.T) {
	isolateAWS(t)
	setAWSKeys(t, "AKIAFAKE", "fakesecret")
	ctx := context.Background()
	open := func(srv *httptest.Server) Backend {
		return mustOpen(t, "s3://bucket?endpoint="+srv.URL, faultOpts())
	}

	t.Run("SlowDown then success", func(t *testing.T) {
		srv, calls := fakeS3(t, func(n int32, w http.ResponseWriter, r *http.Request) {
			if n <= 2 {
				s3XMLError(w, 503, "SlowDown")
				return
			}
			if r.URL.Path != "/bucket/nix-cache-info" {
				s3XMLError(w, 404, "NoSuchKey")
				return
			}
			w.Write([]byte("StoreDir: /nix/store\n"))
		})
		data, err := ReadAll(ctx, open(srv), "nix-cache-info", 100)
		if err != nil || string(data) != "StoreDir: /nix/store\n" {
			t.Errorf("got %q, %v", data, err)
		}
		if calls.Load() != 3 {
			t.Errorf("%d requests, want 3", calls.Load())
		}
	})
	t.Run("parallel retries are not rationed", func(t *testing.T) {
		// Every key fails twice with 500 before succeeding. The SDK's
		// default retry token bucket (500 tokens, 5–14 per retry) would
		// refuse some of these 128 retries; ours must not.
		var mu sync.Mutex
		seen := map[string]int{}
		srv, _ := fakeS3(t, func(n int32, w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			seen[r.URL.Path]++
			k := seen[r.URL.Path]
			mu.Unlock()
			if k <= 2 {
				s3XMLError(w, 500, "InternalError")
				return
			}
			w.Write([]byte("ok"))
		})
		// What is tested is the retry budget, not timeouts: on a loaded
		// machine 64 parallel requests can take longer than the 200 ms
		// the other cases allow, and a timeout spends an attempt.
		opts := faultOpts()
		opts.RequestTimeout = 10 * time.Second
		b := mustOpen(t, "s3://bucket?endpoint="+srv.URL, opts)
		var wg sync.WaitGroup
		var failed atomic.Int32
		for i := range 64 {
			wg.Go(func() {
				if _, err := ReadAll(ctx, b, fmt.Sprintf("k%d.narinfo", i), 10); err != nil {
					failed.Add(1)
					t.Log(err)
				}
			})
		}
		wg.Wait()
		if failed.Load() != 0 {
			t.Errorf("%d of 64 parallel reads failed", failed.Load())
		}
	})
	t.Run("InternalError forever", func(t *testing.T) {
		srv, calls := fakeS3(t, func(n int32, w http.ResponseWriter, r *http.Request) {
			s3XMLError(w, 500, "InternalError")
		})
		if _, err := open(srv).Get(ctx, "nix-cache-info"); err == nil {
			t.Error("succeeded")
		}
		if calls.Load() != 3 {
			t.Errorf("%d requests, want MaxAttempts=3", calls.Load())
		}
	})
	for code, want := range map[string]error{
		"NoSuchKey": ErrNotFound, "AccessDenied": ErrNotFound,
		"InvalidAccessKeyId": ErrAuth, "SignatureDoesNotMatch": ErrAuth, "ExpiredToken": ErrAuth,
	} {
		t.Run(code, func(t *testing.T) {
			status := 403
			if code == "NoSuchKey" {
				status = 404
			}
			srv, calls := fakeS3(t, func(n int32, w http.ResponseWriter, r *http.Request) { s3XMLError(w, status, code) })
			b := open(srv)
			_, err := b.Get(ctx, "x.narinfo")
			if !errors.Is(err, want) {
				t.Errorf("get: %v, want %v", err, want)
			}
			if _, err := b.Stat(ctx, "x.narinfo"); !errors.Is(err, want) {
				t.Errorf("stat: %v, want %v", err, want)
			}
			if strings.Contains(err.Error(), "fakesecret") {
				t.Errorf("error leaks the secret: %v", err)
			}
			if calls.Load() != 2 {
				t.Errorf("%d requests for get+stat, want 2 (no retries)", calls.Load())
			}
		})
	}
	t.Run("stall mid-body", func(t *testing.T) {
		done := make(chan struct{})
		srv, _ := fakeS3(t, func(n int32, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", fmt.Sprint(len(payload)))
			w.WriteHeader(200)
			w.Write(payload[:1000])
			http.NewResponseController(w).Flush()
			select {
			case <-r.Context().Done():
			case <-done:
			}
		})
		t.Cleanup(func() { close(done) })
		b := open(srv)
		err := within(t, "s3 body read", func() error {
			_, _, err := readObject(ctx, b, "nar/x.nar")
			return err
		})
		if !errors.Is(err, ErrStalled) {
			t.Errorf("stalled S3 body: %v, want ErrStalled", err)
		}
	})
	t.Run("no headers", func(t *testing.T) {
		done := make(chan struct{})
		srv, calls := fakeS3(t, func(n int32, w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-done:
			}
		})
		t.Cleanup(func() { close(done) })
		b := open(srv)
		err := within(t, "s3 get", func() error {
			_, err := b.Get(ctx, "nix-cache-info")
			return err
		})
		if !errors.Is(err, ErrTimeout) {
			t.Errorf("silent S3 endpoint: %v, want ErrTimeout", err)
		}
		if calls.Load() != 3 {
			t.Errorf("%d attempts, want MaxAttempts=3", calls.Load())
		}
	})
	t.Run("truncated body", func(t *testing.T) {
		srv, _ := fakeS3(t, func(n int32, w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", fmt.Sprint(len(payload)))
			w.WriteHeader(200)
			w.Write(payload[:1000])
			conn, buf, _ := http.NewResponseController(w).Hijack()
			buf.Flush()
			conn.Close()
		})
		_, _, err := readObject(ctx, open(srv), "nar/x.nar")
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("truncated S3 body: %v, want io.ErrUnexpectedEOF", err)
		}
	})
}
