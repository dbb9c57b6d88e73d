package backend

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// fakeRanges is an in-process Backend over data whose GetRange can be
// made to fail, stall or break bodies. It records every request.
type fakeRanges struct {
	data []byte
	// fault, if set, decides each request: an error to fail it, or how
	// many bytes its body delivers before failing with bodyErr (-1: all),
	// and a delay before the body's first byte.
	fault func(req int, off, n int64) (breakAfter int64, delay time.Duration, err error)

	mu       sync.Mutex
	reqs     [][2]int64 // off, n of every GetRange
	served   int64      // body bytes delivered
	open     int        // bodies open now
	maxOpen  int
	consumed *int64 // bytes the test's reader has taken, if tracked
	maxAhead int64  // most bytes requested beyond consumed
}

func (f *fakeRanges) String() string { return "fake://ranges" }
func (f *fakeRanges) Close() error   { return nil }
func (f *fakeRanges) Get(ctx context.Context, key string) (*Object, error) {
	return &Object{Body: io.NopCloser(bytes.NewReader(f.data)), Size: int64(len(f.data))}, nil
}
func (f *fakeRanges) Stat(ctx context.Context, key string) (Info, error) {
	return Info{Size: int64(len(f.data))}, nil
}
func (f *fakeRanges) List(ctx context.Context, suffix string, fn func(string) error) error {
	return ErrUnsupported
}

func (f *fakeRanges) GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if off < 0 || n < 0 || off+n > int64(len(f.data)) {
		return nil, fmt.Errorf("fake: get %s: %w", key, ErrRange)
	}
	f.mu.Lock()
	req := len(f.reqs)
	f.reqs = append(f.reqs, [2]int64{off, n})
	if f.consumed != nil {
		end := off + n
		if ahead := end - *f.consumed; ahead > f.maxAhead {
			f.maxAhead = ahead
		}
	}
	f.mu.Unlock()
	breakAfter, delay := int64(-1), time.Duration(0)
	if f.fault != nil {
		var err error
		if breakAfter, delay, err = f.fault(req, off, n); err != nil {
			return nil, fmt.Errorf("fake: get %s: %w", key, err)
		}
	}
	f.mu.Lock()
	f.open++
	f.maxOpen = max(f.maxOpen, f.open)
	f.mu.Unlock()
	return &fakeBody{f: f, ctx: ctx, data: f.data[off : off+n], breakAfter: breakAfter, delay: delay}, nil
}

func (f *fakeRanges) openNow() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.open
}

var errBroken = errors.New("connection reset (injected)")

type fakeBody struct {
	f          *fakeRanges
	ctx        context.Context
	data       []byte
	breakAfter int64
	delay      time.Duration
	closed     bool
}

func (b *fakeBody) Read(p []byte) (int, error) {
	if b.delay > 0 {
		select {
		case <-time.After(b.delay):
		case <-b.ctx.Done():
			return 0, b.ctx.Err()
		}
		b.delay = 0
	}
	if err := b.ctx.Err(); err != nil {
		return 0, err
	}
	if len(b.data) == 0 {
		return 0, io.EOF
	}
	if b.breakAfter == 0 {
		return 0, errBroken
	}
	if b.breakAfter > 0 && int64(len(p)) > b.breakAfter {
		p = p[:b.breakAfter]
	}
	n := copy(p, b.data)
	b.data = b.data[n:]
	if b.breakAfter > 0 {
		b.breakAfter -= int64(n)
	}
	b.f.mu.Lock()
	b.f.served += int64(n)
	b.f.mu.Unlock()
	return n, nil
}

func (b *fakeBody) Close() error {
	if !b.closed {
		b.closed = true
		b.f.mu.Lock()
		b.f.open--
		b.f.mu.Unlock()
	}
	return nil
}

func testData(n int) []byte {
	b := make([]byte, n)
	var seed [32]byte
	seed[0] = byte(n)
	rand.NewChaCha8(seed).Read(b)
	return b
}

// readAllChunks reads r with small buffers, like a decompressor does.
func readAllChunks(r io.Reader) ([]byte, error) {
	var out bytes.Buffer
	buf := make([]byte, 37<<10)
	for {
		n, err := r.Read(buf)
		out.Write(buf[:n])
		if err == io.EOF {
			return out.Bytes(), nil
		}
		if err != nil {
			return out.Bytes(), err
		}
	}
}

// checkNoGoroutineLeak fails if a parallel reader's goroutine is still
// running shortly after the test.
func checkNoGoroutineLeak(t *testing.T) {
	t.Cleanup(func() {
		var stacks string
		for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			buf := make([]byte, 1<<20)
			stacks = string(buf[:runtime.Stack(buf, true)])
			if !strings.Contains(stacks, "(*parallelReader)") {
				return
			}
		}
		t.Errorf("parallel reader goroutines leaked:\n%s", stacks)
	})
}

// checkTiles verifies that no byte was delivered twice.
func checkTiles(t *testing.T, f *fakeRanges, size int64) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.served != size {
		t.Errorf("bodies delivered %d bytes for an object of %d: some were fetched twice", f.served, size)
	}
}

func TestParallelReaderSizes(t *testing.T) {
	opts := ParallelOptions{FirstPart: 1 << 20, Budget: 8 << 20, MaxConcurrency: 4}
	for _, size := range []int{0, 1, 1000, 1 << 20, 1<<20 + 1, 1<<20 + 300<<10, 5<<20 + 3, 33<<20 + 17} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			checkNoGoroutineLeak(t)
			f := &fakeRanges{data: testData(size)}
			var consumed int64
			f.consumed = &consumed
			r := NewParallelReader(context.Background(), f, "nar/x.nar", int64(size), opts)
			var out bytes.Buffer
			buf := make([]byte, 64<<10)
			for {
				n, err := r.Read(buf)
				out.Write(buf[:n])
				f.mu.Lock()
				consumed += int64(n)
				f.mu.Unlock()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			if err := r.Close(); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out.Bytes(), f.data) {
				t.Fatalf("read %d bytes, not the object's %d", out.Len(), size)
			}
			checkTiles(t, f, int64(size))
			switch {
			case size == 0 && len(f.reqs) != 0:
				t.Errorf("%d requests for an empty object", len(f.reqs))
			case size > 0 && size <= 1<<20+256<<10 && len(f.reqs) != 1:
				t.Errorf("%d requests for %d bytes, want 1: %v", len(f.reqs), size, f.reqs)
			}
			if f.maxOpen > opts.MaxConcurrency {
				t.Errorf("%d requests in flight, MaxConcurrency %d", f.maxOpen, opts.MaxConcurrency)
			}
			// What is requested ahead of the reader, the part it is
			// reading included, stays within the budget.
			if f.maxAhead > opts.Budget+64<<10 {
				t.Errorf("requested up to %d bytes ahead of the reader, budget %d", f.maxAhead, opts.Budget)
			}
			if size > 8<<20 && f.maxOpen < 2 {
				t.Errorf("never more than one request in flight for %d bytes", size)
			}
		})
	}
}

// TestParallelReaderDefaultSizes: with the default options (a pool of
// 1 MiB buffers) no part outgrows its buffer, whatever the object's tail.
func TestParallelReaderDefaultSizes(t *testing.T) {
	const mib = 1 << 20
	for _, size := range []int{mib + 1, mib + 100<<10, mib + 256<<10, 2*mib - 1, 2*mib + 100<<10, 3*mib + 255<<10, 17*mib + 5, 40*mib + 300<<10} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			checkNoGoroutineLeak(t)
			f := &fakeRanges{data: testData(size)}
			pool := NewPartPool(DefaultPartSize, DefaultParallelBudget)
			r := NewParallelReader(context.Background(), f, "nar/x.nar", int64(size), ParallelOptions{Pool: pool})
			got, err := readAllChunks(r)
			r.Close()
			if err != nil || !bytes.Equal(got, f.data) {
				t.Fatalf("read %d bytes (%v), not the object's %d", len(got), err, size)
			}
			checkTiles(t, f, int64(size))
			for _, q := range f.reqs {
				if q[1] > DefaultPartSize {
					t.Errorf("a part of %d bytes, buffers are %d", q[1], DefaultPartSize)
				}
			}
			if lent, _ := pool.stats(); lent != 0 {
				t.Errorf("%d buffers still lent after Close", lent)
			}
		})
	}
}

// TestParallelReaderBrokenBodies: every body breaks part way; each part
// is resumed from its last byte and nothing is fetched twice.
func TestParallelReaderBrokenBodies(t *testing.T) {
	checkNoGoroutineLeak(t)
	size := 20<<20 + 5
	f := &fakeRanges{data: testData(size)}
	f.fault = func(req int, off, n int64) (int64, time.Duration, error) {
		if n > 1000 {
			return n / 2, 0, nil
		}
		return -1, 0, nil
	}
	r := NewParallelReader(context.Background(), f, "k", int64(size), ParallelOptions{RetryBaseDelay: time.Millisecond})
	defer r.Close()
	got, err := readAllChunks(r)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, f.data) {
		t.Fatal("wrong bytes")
	}
	checkTiles(t, f, int64(size))
	for i, q := range f.reqs[1:] {
		if q[0] == 0 {
			t.Errorf("request %d restarted the object: %v", i+1, q)
		}
	}
}

// TestParallelReaderOutOfOrder: parts complete in random order, some
// slowly; bytes come out in order.
func TestParallelReaderOutOfOrder(t *testing.T) {
	checkNoGoroutineLeak(t)
	size := 24<<20 + 999
	f := &fakeRanges{data: testData(size)}
	f.fault = func(req int, off, n int64) (int64, time.Duration, error) {
		return -1, time.Duration(rand.IntN(30)) * time.Millisecond, nil
	}
	r := NewParallelReader(context.Background(), f, "k", int64(size), ParallelOptions{MaxPart: 1 << 20})
	defer r.Close()
	got, err := readAllChunks(r)
	if err != nil || !bytes.Equal(got, f.data) {
		t.Fatalf("err %v, %d bytes", err, len(got))
	}
	if f.maxOpen < 4 {
		t.Errorf("at most %d requests in flight", f.maxOpen)
	}
}

func TestParallelReaderErrors(t *testing.T) {
	size := int64(12 << 20)
	t.Run("not found", func(t *testing.T) {
		checkNoGoroutineLeak(t)
		f := &fakeRanges{data: testData(int(size))}
		f.fault = func(req int, off, n int64) (int64, time.Duration, error) {
			if off > 0 {
				return 0, 0, ErrNotFound
			}
			return -1, 0, nil
		}
		r := NewParallelReader(context.Background(), f, "k", size, ParallelOptions{})
		defer r.Close()
		got, err := readAllChunks(r)
		if !errors.Is(err, ErrNotFound) {
			t.Fatalf("err %v, want ErrNotFound", err)
		}
		if !bytes.Equal(got, f.data[:len(got)]) {
			t.Fatal("bytes before the error are wrong")
		}
		// Parts already in flight may fail too; none is asked again.
		r.Close()
		f.mu.Lock()
		defer f.mu.Unlock()
		seen := map[int64]bool{}
		for _, q := range f.reqs {
			if seen[q[0]] {
				t.Errorf("range at %d asked again after a permanent error", q[0])
			}
			seen[q[0]] = true
		}
	})
	t.Run("no progress", func(t *testing.T) {
		checkNoGoroutineLeak(t)
		f := &fakeRanges{data: testData(int(size))}
		f.fault = func(req int, off, n int64) (int64, time.Duration, error) {
			if off >= 4<<20 {
				return 0, 0, nil // breaks before its first byte
			}
			return -1, 0, nil
		}
		r := NewParallelReader(context.Background(), f, "k", size, ParallelOptions{MaxResumes: 3, RetryBaseDelay: time.Millisecond})
		defer r.Close()
		_, err := readAllChunks(r)
		if !errors.Is(err, errBroken) {
			t.Fatalf("err %v, want the body's error", err)
		}
	})
	t.Run("stalled", func(t *testing.T) {
		checkNoGoroutineLeak(t)
		f := &fakeRanges{data: testData(int(size))}
		f.fault = func(req int, off, n int64) (int64, time.Duration, error) {
			if req > 0 {
				return 0, 0, fmt.Errorf("%w (injected)", ErrStalled)
			}
			return -1, 0, nil
		}
		r := NewParallelReader(context.Background(), f, "k", size, ParallelOptions{})
		defer r.Close()
		if _, err := readAllChunks(r); !errors.Is(err, ErrStalled) {
			t.Fatalf("err %v, want ErrStalled", err)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		checkNoGoroutineLeak(t)
		f := &fakeRanges{data: testData(int(size))}
		f.fault = func(req int, off, n int64) (int64, time.Duration, error) {
			if off > 0 {
				return -1, time.Hour, nil
			}
			return -1, 0, nil
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		r := NewParallelReader(ctx, f, "k", size, ParallelOptions{})
		defer r.Close()
		start := time.Now()
		if _, err := readAllChunks(r); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err %v, want DeadlineExceeded", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("failed after %v with a 200ms deadline", d)
		}
	})
}

// TestParallelReaderClose: Close with parts hanging returns promptly and
// leaves no goroutine behind.
func TestParallelReaderClose(t *testing.T) {
	checkNoGoroutineLeak(t)
	size := int64(40 << 20)
	f := &fakeRanges{data: testData(int(size))}
	f.fault = func(req int, off, n int64) (int64, time.Duration, error) {
		if off > 0 {
			return -1, time.Hour, nil
		}
		return -1, 0, nil
	}
	r := NewParallelReader(context.Background(), f, "k", size, ParallelOptions{})
	buf := make([]byte, 1<<20)
	if _, err := io.ReadFull(r, buf); err != nil {
		t.Fatal(err)
	}
	for f.openNow() < 2 {
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %v", d)
	}
	if _, err := r.Read(buf); err == nil {
		t.Error("Read after Close succeeded")
	}
	if n := f.openNow(); n != 0 {
		t.Errorf("%d bodies left open", n)
	}
}

// TestParallelReaderHTTP reads through a real http.FileServer (206), reads
// the whole answer of a server that ignores Range, and is refused by one
// that encodes its answers.
func TestParallelReaderHTTP(t *testing.T) {
	checkNoGoroutineLeak(t)
	dir := t.TempDir()
	data := testData(30<<20 + 11)
	if err := os.MkdirAll(filepath.Join(dir, "nar"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "nar", "x.nar"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	files := http.FileServer(http.Dir(dir))
	var mu sync.Mutex
	ranges := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, "/plain/"):
			w.Write(data) // ignores Range
			return
		case strings.HasPrefix(r.URL.Path, "/encoded/"):
			w.Header().Set("Content-Encoding", "zstd")
			r.URL.Path = strings.Replace(r.URL.Path, "/encoded/", "/", 1)
		}
		if r.Header.Get("Range") != "" {
			mu.Lock()
			ranges++
			mu.Unlock()
		}
		files.ServeHTTP(w, r)
	}))
	defer srv.Close()
	b := mustOpen(t, srv.URL, Options{RetryBaseDelay: time.Millisecond})
	defer b.Close()

	r := NewParallelReader(context.Background(), b, "nar/x.nar", int64(len(data)), ParallelOptions{})
	got, err := readAllChunks(r)
	r.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("err %v, %d bytes", err, len(got))
	}
	if ranges < 8 {
		t.Errorf("%d range requests for %d bytes", ranges, len(data))
	}
	// A server that ignores Range: its answer to the first request is
	// the whole object, read as it comes (no second request).
	r = NewParallelReader(context.Background(), b, "plain/nar/x.nar", int64(len(data)), ParallelOptions{})
	got, err = readAllChunks(r)
	whole := ServedWhole(r)
	r.Close()
	if err != nil || !bytes.Equal(got, data) || !whole {
		t.Errorf("plain: err %v, %d bytes, served whole %v; want the object from one answer", err, len(got), whole)
	}
	r = NewParallelReader(context.Background(), b, "encoded/nar/x.nar", int64(len(data)), ParallelOptions{})
	n, err := r.Read(make([]byte, 4096))
	r.Close()
	if n != 0 || !errors.Is(err, ErrUnsupported) {
		t.Errorf("encoded: %d bytes, err %v; want ErrUnsupported", n, err)
	}
	// GetRange without the parallel reader keeps working around both.
	rc, err := b.GetRange(context.Background(), "plain/nar/x.nar", 5<<20, 100)
	if err != nil {
		t.Fatal(err)
	}
	p, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(p, data[5<<20:5<<20+100]) {
		t.Errorf("plain GetRange: %v", err)
	}
	b.Close()
}

func TestParallelReaderS3(t *testing.T) {
	g := startVersityGW(t, testRegion)
	isolateAWS(t)
	setAWSKeys(t, vgwAccess, vgwSecret)
	data := testData(20<<20 + 3)
	c := g.adminClient()
	ctx := context.Background()
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("cache")}); err != nil {
		t.Fatal(err)
	}
	for key, enc := range map[string]string{"nar/x.nar": "", "nar/enc.nar": "zstd"} {
		in := &s3.PutObjectInput{Bucket: aws.String("cache"), Key: aws.String(key), Body: bytes.NewReader(data)}
		if enc != "" {
			in.ContentEncoding = aws.String(enc)
		}
		if _, err := c.PutObject(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	checkNoGoroutineLeak(t)
	b := mustOpen(t, "s3://cache?region="+testRegion+"&endpoint="+g.Endpoint, s3Opts())
	r := NewParallelReader(ctx, b, "nar/x.nar", int64(len(data)), ParallelOptions{})
	got, err := readAllChunks(r)
	r.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("err %v, %d bytes", err, len(got))
	}
	r = NewParallelReader(ctx, b, "nar/enc.nar", int64(len(data)), ParallelOptions{})
	if _, err := r.Read(make([]byte, 10)); !errors.Is(err, ErrUnsupported) {
		t.Errorf("object with Content-Encoding: %v, want ErrUnsupported", err)
	}
	r.Close()
	// A wrong size is the server's ErrRange, not a short success.
	r = NewParallelReader(ctx, b, "nar/x.nar", int64(len(data))+5<<20, ParallelOptions{})
	if _, err := readAllChunks(r); !errors.Is(err, ErrRange) {
		t.Errorf("reading past the end: %v, want ErrRange", err)
	}
	r.Close()
	b.Close()
}
