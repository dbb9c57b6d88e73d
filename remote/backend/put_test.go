package backend

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"io/fs"
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

// failAfter yields n bytes of data and then fails with err.
type failAfter struct {
	data []byte
	err  error
}

func (f *failAfter) Read(p []byte) (int, error) {
	if len(f.data) == 0 {
		return 0, f.err
	}
	n := copy(p, f.data)
	f.data = f.data[n:]
	return n, nil
}

// onlyReader hides every method but Read (no Seek, no WriteTo).
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

func randBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func writerOf(t *testing.T, b Backend) Writer {
	t.Helper()
	w, ok := b.(Writer)
	if !ok {
		t.Fatalf("%T is not a Writer", b)
	}
	return w
}

func getAll(t *testing.T, b Backend, key string) []byte {
	t.Helper()
	obj, err := b.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer obj.Body.Close()
	data, err := io.ReadAll(obj.Body)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	return data
}

// wantNamed checks err names the cache and the key.
func wantNamed(t *testing.T, err error, b Backend, key string) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), b.String()) || !strings.Contains(err.Error(), key) {
		t.Errorf("error %v does not name cache %s and key %s", err, b, key)
	}
}

// tempLeft lists the files under dir whose name has ".tmp.".
func tempLeft(t *testing.T, dir string) []string {
	t.Helper()
	var left []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.Contains(d.Name(), ".tmp.") {
			left = append(left, p)
		}
		return nil
	})
	return left
}

func TestFilePut(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	b := mustOpen(t, "file://"+dir, Options{})
	w := writerOf(t, b)

	for key, data := range map[string][]byte{
		"nix-cache-info":             []byte("StoreDir: /nix/store\n"),
		"nar/abc.nar.xz":             randBytes(t, 300<<10),
		"log/deep/er/x.drv":          []byte("log"),
		"empty":                      nil,
		"0123456789abcdef.narinfo":   []byte("StorePath: /nix/store/x\n"),
		"nar/abc.nar.xz.second-copy": randBytes(t, 1),
	} {
		if err := w.Put(ctx, key, onlyReader{bytes.NewReader(data)}, int64(len(data)), "application/octet-stream"); err != nil {
			t.Fatalf("put %s: %v", key, err)
		}
		if got := getAll(t, b, key); !bytes.Equal(got, data) {
			t.Errorf("%s: got %d bytes back, want %d", key, len(got), len(data))
		}
		st, err := os.Stat(filepath.Join(dir, key))
		if err != nil {
			t.Fatal(err)
		}
		if p := st.Mode().Perm(); p&0o600 != 0o600 || p&0o111 != 0 || p&^0o644 != 0 {
			t.Errorf("%s: mode %v, want 0644 less the umask", key, p)
		}
	}
	if st, err := os.Stat(filepath.Join(dir, "log/deep")); err != nil || st.Mode().Perm()&^0o755 != 0 {
		t.Errorf("log/deep: %v %v", st.Mode(), err)
	}

	// Replace, then fail replacements in every way: the old object stays.
	if err := w.Put(ctx, "obj", strings.NewReader("old"), 3, ""); err != nil {
		t.Fatal(err)
	}
	if err := w.Put(ctx, "obj", strings.NewReader("older"), 5, ""); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	for name, tc := range map[string]struct {
		ctx  context.Context
		r    io.Reader
		size int64
		want error
	}{
		"short":     {ctx, strings.NewReader("new"), 10, io.ErrUnexpectedEOF},
		"long":      {ctx, strings.NewReader("newer than that"), 5, ErrSizeMismatch},
		"fails":     {ctx, &failAfter{data: randBytes(t, 1<<20), err: boom}, 2 << 20, boom},
		"fails-end": {ctx, &failAfter{data: []byte("abc"), err: boom}, 3, boom},
		"cancelled": {cancelled, strings.NewReader("new"), 3, context.Canceled},
		"negative":  {ctx, strings.NewReader(""), -1, nil},
	} {
		err := w.Put(tc.ctx, "obj", tc.r, tc.size, "")
		if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
			t.Errorf("%s: put = %v, want %v", name, err, tc.want)
		}
		wantNamed(t, err, b, "obj")
		if got := getAll(t, b, "obj"); string(got) != "older" {
			t.Errorf("%s: after a failed put the object is %q", name, got)
		}
	}
	if left := tempLeft(t, dir); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}

	// A new key whose put fails does not appear.
	if err := w.Put(ctx, "nar/new.nar", strings.NewReader("x"), 2, ""); !errors.Is(err, ErrSizeMismatch) {
		t.Errorf("short put of a new key: %v", err)
	}
	if _, err := b.Stat(ctx, "nar/new.nar"); !errors.Is(err, ErrNotFound) {
		t.Errorf("failed put left an object: %v", err)
	}
	// List never shows temporaries.
	os.WriteFile(filepath.Join(dir, "x.narinfo.tmp.1.1"), nil, 0o644)
	b.List(ctx, ".narinfo", func(k string) error {
		if k != "0123456789abcdef.narinfo" {
			t.Errorf("listed %q", k)
		}
		return nil
	})

	// Delete.
	if err := w.Delete(ctx, "obj"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Stat(ctx, "obj"); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleted object: %v", err)
	}
	if err := w.Delete(ctx, "obj"); err != nil {
		t.Errorf("deleting a missing key: %v", err)
	}
	if err := w.Delete(ctx, "nar"); err == nil {
		t.Error("deleting a directory succeeded")
	}
}

func TestFilePutInvalidKeys(t *testing.T) {
	ctx := context.Background()
	outside := t.TempDir()
	dir := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(dir, "evil")); err != nil {
		t.Fatal(err)
	}
	b := mustOpen(t, "file://"+dir, Options{})
	w := writerOf(t, b)
	for _, key := range []string{"", "/etc/passwd", "../x", "nar/../../x", "..", "a\x00b", `a\b`, "nar/", "evil/x", "https://example.org/x"} {
		err := w.Put(ctx, key, strings.NewReader("x"), 1, "")
		if !errors.Is(err, ErrInvalidKey) {
			t.Errorf("put %q: %v, want ErrInvalidKey", key, err)
		}
		if key != "evil/x" {
			if err := w.Delete(ctx, key); !errors.Is(err, ErrInvalidKey) {
				t.Errorf("delete %q: %v, want ErrInvalidKey", key, err)
			}
		}
	}
	if ents, _ := os.ReadDir(outside); len(ents) > 0 {
		t.Errorf("a put escaped the store: %v", ents)
	}
	if left := tempLeft(t, dir); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// putServer is an http cache accepting PUT and DELETE.
type putServer struct {
	mu      sync.Mutex
	objects map[string][]byte
	types   map[string]string
	puts    atomic.Int32
	// fail, if set, answers a request instead of the store (status > 0).
	fail func(r *http.Request, n int32) int
}

func newPutServer(t *testing.T) (*putServer, *httptest.Server) {
	ps := &putServer{objects: map[string][]byte{}, types: map[string]string{}}
	srv := httptest.NewServer(ps)
	t.Cleanup(srv.Close)
	return ps, srv
}

func (ps *putServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var n int32
	if r.Method == http.MethodPut {
		n = ps.puts.Add(1)
	}
	if ps.fail != nil {
		if st := ps.fail(r, n); st > 0 {
			io.Copy(io.Discard, r.Body)
			w.WriteHeader(st)
			return
		}
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	switch r.Method {
	case http.MethodPut:
		data, err := io.ReadAll(r.Body)
		if err != nil || int64(len(data)) != r.ContentLength {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		ps.objects[r.URL.Path] = data
		ps.types[r.URL.Path] = r.Header.Get("Content-Type")
		w.WriteHeader(http.StatusCreated)
	case http.MethodDelete:
		if _, ok := ps.objects[r.URL.Path]; !ok {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		delete(ps.objects, r.URL.Path)
		w.WriteHeader(http.StatusNoContent)
	case http.MethodGet:
		data, ok := ps.objects[r.URL.Path]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		w.Write(data)
	}
}

func (ps *putServer) has(path string) bool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	_, ok := ps.objects[path]
	return ok
}

func TestHTTPPut(t *testing.T) {
	ctx := context.Background()
	ps, srv := newPutServer(t)
	opts := Options{RetryBaseDelay: time.Millisecond, MaxAttempts: 3}
	b := mustOpen(t, srv.URL+"/cache", opts)
	w := writerOf(t, b)

	data := randBytes(t, 2<<20)
	if err := w.Put(ctx, "nar/x.nar.zst", onlyReader{bytes.NewReader(data)}, int64(len(data)), "application/zstd"); err != nil {
		t.Fatal(err)
	}
	if got := getAll(t, b, "nar/x.nar.zst"); !bytes.Equal(got, data) {
		t.Errorf("got %d bytes back", len(got))
	}
	if ct := ps.types["/cache/nar/x.nar.zst"]; ct != "application/zstd" {
		t.Errorf("Content-Type %q", ct)
	}
	if err := w.Put(ctx, "empty", strings.NewReader(""), 0, ""); err != nil || !ps.has("/cache/empty") {
		t.Errorf("empty put: %v", err)
	}

	// A seekable reader is rewound to where it started for each retry.
	ps.fail = func(r *http.Request, n int32) int {
		if r.Method == http.MethodPut && n <= 2 {
			return http.StatusServiceUnavailable
		}
		return 0
	}
	ps.puts.Store(0)
	rs := bytes.NewReader(append([]byte("skipped"), data...))
	rs.Seek(7, io.SeekStart)
	if err := w.Put(ctx, "retried", rs, int64(len(data)), ""); err != nil {
		t.Fatalf("retried put: %v", err)
	}
	ps.fail = func(r *http.Request, n int32) int {
		if r.Method == http.MethodPut {
			return http.StatusServiceUnavailable
		}
		return 0
	}
	if got := getAll(t, b, "retried"); !bytes.Equal(got, data) || ps.puts.Load() != 3 {
		t.Errorf("retried put: %d bytes back after %d PUTs", len(got), ps.puts.Load())
	}
	// Any other reader gets one attempt.
	ps.puts.Store(0)
	err := w.Put(ctx, "once", onlyReader{bytes.NewReader(data)}, int64(len(data)), "")
	if err == nil || !strings.Contains(err.Error(), "503") || ps.puts.Load() != 1 || ps.has("/cache/once") {
		t.Errorf("non-seekable put against 503: %v after %d PUTs", err, ps.puts.Load())
	}
	wantNamed(t, err, b, "once")

	for st, want := range map[int]error{401: ErrAuth, 403: ErrAuth, 405: ErrUnsupported, 501: ErrUnsupported} {
		ps.fail = func(*http.Request, int32) int { return st }
		ps.puts.Store(0)
		err := w.Put(ctx, "refused", bytes.NewReader(data), int64(len(data)), "")
		if !errors.Is(err, want) || ps.puts.Load() != 1 {
			t.Errorf("HTTP %d: %v after %d PUTs, want %v", st, err, ps.puts.Load(), want)
		}
		if st == 405 && !strings.Contains(err.Error(), "does not accept PUT") {
			t.Errorf("HTTP 405: unclear error %v", err)
		}
		if err := w.Delete(ctx, "x"); !errors.Is(err, want) {
			t.Errorf("HTTP %d on delete: %v, want %v", st, err, want)
		}
	}
	ps.fail = nil

	// Wrong sizes never store an object, and are not retried.
	ps.puts.Store(0)
	for name, r := range map[string]io.Reader{
		"short":  bytes.NewReader(data[:1<<20]),
		"long":   bytes.NewReader(append(data, 'x')),
		"failed": &failAfter{data: data[:1<<20], err: errors.New("boom")},
	} {
		err := w.Put(ctx, name, r, int64(len(data)), "")
		if err == nil || ps.has("/cache/"+name) {
			t.Errorf("%s: put = %v, stored %v", name, err, ps.has("/cache/"+name))
		}
		if name != "failed" && !errors.Is(err, ErrSizeMismatch) {
			t.Errorf("%s: %v, want ErrSizeMismatch", name, err)
		}
	}
	if n := ps.puts.Load(); n > 3 {
		t.Errorf("wrong-size puts were retried: %d PUTs", n)
	}

	if err := w.Delete(ctx, "retried"); err != nil || ps.has("/cache/retried") {
		t.Errorf("delete: %v", err)
	}
	if err := w.Delete(ctx, "retried"); err != nil {
		t.Errorf("delete of a missing key: %v", err)
	}
}

// TestHTTPPutTimeouts: RequestTimeout bounds the wait for the server, not
// the upload; the context deadline bounds the whole Put.
func TestHTTPPutTimeouts(t *testing.T) {
	ctx := context.Background()
	_, srv := newPutServer(t)
	b := mustOpen(t, srv.URL, Options{RequestTimeout: 200 * time.Millisecond, RetryBaseDelay: time.Millisecond, MaxAttempts: 2})
	w := writerOf(t, b)

	// 8 chunks 100 ms apart: 800 ms of upload, four RequestTimeouts.
	pr, pw := io.Pipe()
	go func() {
		for range 8 {
			time.Sleep(100 * time.Millisecond)
			pw.Write(make([]byte, 1000))
		}
		pw.Close()
	}()
	if err := w.Put(ctx, "slow", pr, 8000, ""); err != nil {
		t.Errorf("slow but steady upload: %v", err)
	}

	// A server that never answers: ErrTimeout once the body is sent.
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		<-r.Context().Done()
	}))
	defer hang.Close()
	hb := writerOf(t, mustOpen(t, hang.URL, Options{RequestTimeout: 200 * time.Millisecond, RetryBaseDelay: time.Millisecond, MaxAttempts: 2}))
	start := time.Now()
	err := hb.Put(ctx, "x", strings.NewReader("abc"), 3, "")
	if !errors.Is(err, ErrTimeout) || time.Since(start) > 3*time.Second {
		t.Errorf("hanging server: %v after %v", err, time.Since(start))
	}

	// The deadline ends a Put whose reader is slow.
	dctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	dr, dw := io.Pipe()
	defer dw.Close()
	go func() {
		for {
			time.Sleep(50 * time.Millisecond)
			if _, err := dw.Write([]byte("x")); err != nil {
				return
			}
		}
	}()
	start = time.Now()
	err = w.Put(dctx, "deadline", dr, 1<<20, "")
	dr.Close()
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 2*time.Second {
		t.Errorf("deadline: %v after %v", err, time.Since(start))
	}
}
