package blob

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/narfs/narfs/remote/backend"
)

// rangeless serves the fixture's object from a real net/http server that
// ignores Range (200, the whole object), counting requests and bytes;
// cut, if set, ends the answer to request n after that many bytes.
type rangeless struct {
	obj      []byte
	requests atomic.Int64
	sent     atomic.Int64
	cut      func(n int64) int
}

func (s *rangeless) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := s.requests.Add(1)
	body := s.obj
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	if s.cut != nil {
		if c := s.cut(n); c >= 0 {
			body = body[:c] // net/http closes the connection: a short body
		}
	}
	w.WriteHeader(http.StatusOK)
	m, _ := w.Write(body)
	s.sent.Add(int64(m))
}

func (f *fixture) openRangeless(t *testing.T, srv *rangeless) *Blob {
	t.Helper()
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	u, err := backend.ParseStoreURL(hs.URL)
	if err != nil {
		t.Fatal(err)
	}
	be, err := backend.Open(context.Background(), u, backend.Options{MaxAttempts: 1, NetrcPath: "/nonexistent"})
	if err != nil {
		t.Fatal(err)
	}
	f.src = nil
	b := f.openWith(t, Options{})
	b.src = be
	return b
}

// TestStreamReadsTheObjectOnce: from a server that ignores Range, reads of
// every file in any order cost one request and the object once, each
// chunk verified.
func TestStreamReadsTheObjectOnce(t *testing.T) {
	f := newFixture(t)
	srv := &rangeless{obj: f.src.obj}
	b := f.openRangeless(t, srv)
	for _, name := range []string{"d", "b", "a", "c"} {
		got, err := f.read(t, b, name)
		n := f.file(name)
		if err != nil || !bytes.Equal(got, f.nar[n.NarOffset:n.NarOffset+n.Size]) {
			t.Fatalf("read %s: %v", name, err)
		}
	}
	// The stream goes on past the last reader's chunk (the object's tail):
	// wait for it to settle, within a bound.
	for deadline := time.Now().Add(10 * time.Second); !b.Complete(0, len(f.x.Chunks)) && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if !b.Complete(0, len(f.x.Chunks)) {
		t.Error("chunks the stream passed were not kept")
	}
	if r, s := srv.requests.Load(), srv.sent.Load(); r != 1 || s != int64(len(srv.obj)) {
		t.Errorf("%d requests, %d bytes for a %d byte object; want 1 and the object", r, s, len(srv.obj))
	}
}

// TestStreamCorruptChunkFailsOnlyItself: a wrong chunk in the stream is
// refused (ErrChunk, not served); the stream goes on and the other files
// read.
func TestStreamCorruptChunkFailsOnlyItself(t *testing.T) {
	f := newFixture(t)
	n := f.file("c")
	k, _ := f.x.Span(n.NarOffset, n.Size)
	c := f.x.Chunks[k]
	obj := bytes.Clone(f.src.obj)
	for i := c.FileOffset; i < c.FileOffset+c.FileLen; i++ {
		obj[i] ^= 0x55
	}
	srv := &rangeless{obj: obj}
	b := f.openRangeless(t, srv)
	if _, err := f.read(t, b, "c"); !errors.Is(err, ErrChunk) {
		t.Fatalf("read of the corrupt chunk: %v, want ErrChunk", err)
	}
	for _, name := range []string{"a", "b", "d"} {
		got, err := f.read(t, b, name)
		m := f.file(name)
		if err != nil || !bytes.Equal(got, f.nar[m.NarOffset:m.NarOffset+m.Size]) {
			t.Fatalf("read %s: %v", name, err)
		}
	}
	if r := srv.requests.Load(); r != 1 {
		t.Errorf("%d requests; want the one stream", r)
	}
}

// TestStreamBreakFailsThenRestarts: a stream that breaks part way fails
// the reads of chunks it did not reach (with the cause, not a hang), keeps
// those it passed, and the next read starts a stream again.
func TestStreamBreakFailsThenRestarts(t *testing.T) {
	f := newFixture(t)
	half := len(f.src.obj) / 2
	srv := &rangeless{obj: f.src.obj, cut: func(n int64) int {
		if n == 1 {
			return half
		}
		return -1
	}}
	b := f.openRangeless(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n := f.file("d") // at the end
	p := make([]byte, n.Size)
	if _, err := b.ReadAt(ctx, p, n.NarOffset, n.NarOffset+n.Size); err == nil || ctx.Err() != nil {
		t.Fatalf("read past a broken stream: %v (context %v), want the stream's error", err, ctx.Err())
	}
	first, _ := f.x.Span(0, 1)
	if !b.Complete(first, first+1) {
		t.Error("the chunks before the break were not kept")
	}
	got, err := f.read(t, b, "d")
	if err != nil || !bytes.Equal(got, f.nar[n.NarOffset:n.NarOffset+n.Size]) {
		t.Fatalf("read after the break: %v", err)
	}
	if r := srv.requests.Load(); r != 2 {
		t.Errorf("%d requests, want 2 (the broken stream, the next)", r)
	}
}
