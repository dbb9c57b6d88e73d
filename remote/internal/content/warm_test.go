package content

import (
	"io"
	"testing"

	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/remote/blob"
	"github.com/narfs/narfs/remote/internal/tune"
	"github.com/narfs/narfs/remote/localcache"
)

// testStore is a Store over a fresh local cache dir.
func testStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(Options{Dir: t.TempDir(), Size: 1 << 30, Timeout: tune.DefaultTimeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// commitBlob commits an entry key whose NAR blob is data, and returns it
// pinned.
func commitBlob(t *testing.T, s *Store, key string, data []byte) *localcache.Entry {
	t.Helper()
	pend, err := s.cache.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer pend.Abort()
	f, err := pend.CreateFile(blob.BlobFile)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	f.Close()
	e, err := pend.Commit(key, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// Opens of a fetched path's small files after the first share its blob's
// descriptor and cost no syscall; each still reads its own bytes, and the
// descriptor outlives every reader only by tune.WarmLinger.
func TestWarmBlobSharedByOpens(t *testing.T) {
	s := testStore(t)
	data := []byte("nix-archive-1 ... the bytes of a small file ... the rest of the NAR")
	key := "0123456789abcdfghijklmnpqrsvwxyz0123456789abcdfghij"
	node := &nar.Node{Type: nar.TypeRegular, NarOffset: 18, Size: 27}
	want := string(data[node.NarOffset : node.NarOffset+node.Size])

	open := func() *Span {
		t.Helper()
		if f, ok := s.Warm(key, node); ok {
			return f
		}
		drops := s.cache.Drops()
		e, err := s.cache.Acquire(key)
		if err != nil {
			t.Fatal(err)
		}
		defer e.Release()
		f, err := s.OpenSpan(e, node, int64(len(data)), "path/file")
		if err != nil {
			t.Fatal(err)
		}
		return s.Share(key, f, drops)
	}
	commitBlob(t, s, key, data).Release()
	first := open()
	second := open()
	if first.File != second.File {
		t.Error("the second open of a small file opened the blob again")
	}
	for _, f := range []*Span{first, second} {
		if got, _ := io.ReadAll(f.Reader()); string(got) != want {
			t.Errorf("read %q, want %q", got, want)
		}
	}
	first.Close()
	if got, _ := io.ReadAll(second.Reader()); string(got) != want {
		t.Error("closing one reader of a warm blob broke another")
	}
	second.Close()

	s.warmMu.Lock()
	b := s.warm[key]
	s.warmMu.Unlock()
	if b == nil {
		t.Fatal("no warm blob after opens of a small file")
	}
	s.warmMu.Lock()
	b.idle = b.idle.Add(-tune.WarmLinger)
	s.warmMu.Unlock()
	s.lingerWarm(b)
	s.warmMu.Lock()
	defer s.warmMu.Unlock()
	if !b.closed || s.warm[key] != nil {
		t.Error("a warm blob idle for tune.WarmLinger is still open")
	}
}
