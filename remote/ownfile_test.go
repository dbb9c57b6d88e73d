package remote

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/remote/internal/layout"
)

// logBuf collects a logger's output, safe for concurrent writes.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// tamper overwrites a file with as many other bytes.
func tamper(t *testing.T, p string) {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	putFile(t, p, bytes.Repeat([]byte("X"), int(fi.Size())))
}

// A large file's own copy in a stock entry that was changed after the NAR
// was verified (same size, other bytes) is never served, neither by the
// process that wrote it nor after a restart: the entry is fetched again,
// and the cause is logged.
func TestTamperedOwnFileNeverServed(t *testing.T) {
	var buf bytes.Buffer
	w := nar.NewWriter(&buf)
	w.Directory()
	big := bytes.Repeat([]byte("0123456789abcdef"), (2<<20)/16)
	w.Entry("big")
	w.File(false, int64(len(big)), bytes.NewReader(big))
	w.EndDirectory()
	w.Close()
	data := buf.Bytes()
	dir := copyCache(t, "cache-none")
	setNARFile(t, dir, pathLib, filepath.Join(dir, "nar", "own.nar"), data)
	ni := readNarinfo(t, dir, hashPart(pathLib))
	resign(t, ni)
	writeNarinfo(t, dir, ni)

	var logs logBuf
	cfg := trustedConfig(t)
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	s := openStore(t, dir, "", cfg)
	p := mustResolve(t, s, pathLib)
	root, err := s.materialize(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	n, err := buildListing(t, data).Find("big")
	if err != nil {
		t.Fatal(err)
	}
	own := filepath.Join(filepath.Dir(root), layout.OwnFileName(n.NarOffset))
	read := func(s *Core) []byte {
		t.Helper()
		f, _, err := s.openVerified(context.Background(), p, "big")
		if err != nil {
			return nil // EIO is fine; the tampered bytes are not
		}
		defer f.Close()
		got, err := io.ReadAll(f.Reader())
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := read(s); !bytes.Equal(got, big) {
		t.Fatal("the untouched copy does not read back")
	}

	tamper(t, own)
	if got := read(s); got != nil && !bytes.Equal(got, big) {
		t.Fatal("the process that verified the NAR served its tampered own copy")
	}
	if gets := s.Stats().NarGets; gets != 2 {
		t.Errorf("NarGets %d, want the NAR fetched again after the tampered copy", gets)
	}

	// A restart: nothing remembered, the recorded hash decides.
	s.Close()
	nowOwn, _ := filepath.Glob(filepath.Join(cfg.CacheDir, "v*", "nar", "*", layout.OwnFileName(n.NarOffset)))
	if len(nowOwn) != 1 {
		t.Fatalf("own copies after the re-fetch: %v", nowOwn)
	}
	tamper(t, nowOwn[0])
	s2 := openStore(t, dir, "", cfg)
	p2 := mustResolve(t, s2, pathLib)
	p = p2
	if got := read(s2); got != nil && !bytes.Equal(got, big) {
		t.Fatal("a restarted narfs served a tampered own copy trusted by its size")
	}
	if !strings.Contains(logs.String(), "does not match what was verified") {
		t.Errorf("the tampered copy was not logged:\n%s", logs.String())
	}
}

// An indexed path's own copy of a large file that was changed after it
// was made is not served; the file reads by verified chunks, and the cause
// is logged.
func TestTamperedIndexedOwnFileNeverServed(t *testing.T) {
	c := makeIndexedCache(t, pathTree, "zstd")
	var logs logBuf
	cfg := trustedConfig(t)
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	s := openStore(t, c.dir, "", cfg)
	p := mustResolve(t, s, pathTree)
	files := filesOf(c.listing)
	var large string
	for name, n := range files {
		if n.Size >= MaxRead && (large == "" || n.Size > files[large].Size) {
			large = name
		}
	}
	if large == "" {
		t.Skip("fixture has no file of MaxRead bytes")
	}
	n := files[large]
	want := contentsOf(c, n)
	if got, err := readChunked(t, s, p, large); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("first read: %v", err)
	}
	// Made in the background after the complete read's close.
	for i := 0; ; i++ {
		f, err := s.openChunked(context.Background(), p, large)
		if err != nil {
			t.Fatal(err)
		}
		done := f.Own() != nil
		f.Close()
		if done {
			break
		}
		if i > 200 {
			t.Fatal("no file of its own after a complete read")
		}
		time.Sleep(10 * time.Millisecond)
	}
	own, _ := filepath.Glob(filepath.Join(cfg.CacheDir, "v*", "nar", "*", layout.OwnFileName(n.NarOffset)))
	if len(own) != 1 {
		t.Fatalf("own copies: %v", own)
	}
	tamper(t, own[0])
	f, err := s.openChunked(context.Background(), p, large)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Own() != nil {
		got, _ := io.ReadAll(f.Own().Reader())
		if !bytes.Equal(got, want) {
			t.Fatal("a tampered own copy is served, trusted by its size")
		}
	}
	got := make([]byte, n.Size)
	if _, err := f.ReadAt(context.Background(), got, 0); err != nil && err != io.EOF {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Error("reading by chunks after the tampered copy: wrong bytes")
	}
	if !strings.Contains(logs.String(), "does not match what was verified") {
		t.Errorf("the tampered copy was not logged:\n%s", logs.String())
	}
}
