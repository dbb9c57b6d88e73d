package blob

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/remote/chunkindex"
	"github.com/narfs/narfs/remote/storepath"
)

// source serves an object from memory, with faults.
type source struct {
	obj      []byte
	requests atomic.Int64
	// fail, if set, decides per request: an error at once, or how many
	// bytes to deliver before the body breaks (-1: all).
	fail  func(req int64) (cut int, err error)
	delay time.Duration
}

func (s *source) GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	req := s.requests.Add(1)
	if s.delay > 0 {
		select {
		case <-time.After(s.delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	body := s.obj[off : off+n]
	if s.fail != nil {
		cut, err := s.fail(req)
		if err != nil {
			return nil, err
		}
		if cut >= 0 {
			return io.NopCloser(io.MultiReader(bytes.NewReader(body[:cut]), errReader{})), nil
		}
	}
	return io.NopCloser(bytes.NewReader(body)), nil
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, io.ErrUnexpectedEOF }

type fixture struct {
	nar []byte
	x   *chunkindex.Index
	src *source
	dir string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	rng := rand.New(rand.NewPCG(7, 8))
	var buf bytes.Buffer
	w := nar.NewWriter(&buf)
	w.Directory()
	for i, size := range []int{3 << 20, 100, 500 << 10, 2 << 20} {
		w.Entry(string(rune('a' + i)))
		b := make([]byte, size)
		for j := range b {
			b[j] = byte(rng.IntN(8))
		}
		w.File(false, int64(size), bytes.NewReader(b))
	}
	w.EndDirectory()
	w.Close()
	data := buf.Bytes()
	l, err := nar.BuildListing(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	ends, _ := chunkindex.Plan(l, int64(len(data)))
	var obj bytes.Buffer
	bld, _ := chunkindex.NewBuilder(&obj, ends, "zstd", zstd.SpeedFastest)
	bld.Write(data)
	chunks, size, fh, err := bld.Finish()
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256(data)
	x := &chunkindex.Index{StorePath: "/nix/store/ymydngcp0syr2bpvigprvim861rmkrvc-x", NarHash: storepath.Hash{Algo: "sha256", Digest: d[:]},
		NarSize: int64(len(data)), URL: "nar/x", Compression: "zstd", FileSize: size, FileHash: fh, Chunks: chunks, Listing: l}
	return &fixture{nar: data, x: x, src: &source{obj: obj.Bytes()}, dir: t.TempDir()}
}

func (f *fixture) open(t *testing.T) *Blob {
	t.Helper()
	return f.openWith(t, Options{})
}

func (f *fixture) openWith(t *testing.T, o Options) *Blob {
	t.Helper()
	o.FetchDeadline = func(int64) time.Duration { return 5 * time.Second }
	bf, err := os.OpenFile(filepath.Join(f.dir, BlobFile), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	bf.Truncate(f.x.NarSize)
	mf, err := os.OpenFile(filepath.Join(f.dir, MarksFile), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	mf.Truncate(int64(len(f.x.Chunks)))
	b, err := New(context.Background(), f.x, bf, mf, f.src, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func (f *fixture) file(name string) *nar.Node {
	n, _ := f.x.Listing.Find(name)
	return n
}

func (f *fixture) read(t *testing.T, b *Blob, name string) ([]byte, error) {
	n := f.file(name)
	p := make([]byte, n.Size)
	_, err := b.ReadAt(context.Background(), p, n.NarOffset, n.NarOffset+n.Size)
	return p, err
}

func TestReadsOnlyWhatIsNeeded(t *testing.T) {
	f := newFixture(t)
	b := f.open(t)
	got, err := f.read(t, b, "b")
	if err != nil || !bytes.Equal(got, f.nar[f.file("b").NarOffset:][:100]) {
		t.Fatalf("read b: %v", err)
	}
	if n := f.src.requests.Load(); n != 1 {
		t.Fatalf("%d requests for a small file", n)
	}
	// A file of several chunks in one run: one request.
	before := f.src.requests.Load()
	if _, err := f.read(t, b, "a"); err != nil {
		t.Fatal(err)
	}
	if n := f.src.requests.Load() - before; n != 1 {
		t.Errorf("3 MiB file: %d requests, want 1 (coalesced)", n)
	}
}

func TestBrokenBodyFailsOnlyWhatItDidNotReach(t *testing.T) {
	f := newFixture(t)
	n := f.file("a")
	first, last := f.x.Span(n.NarOffset, n.Size)
	if last-first < 2 {
		t.Fatal("want a file of several chunks")
	}
	// The first request breaks after its first chunk.
	f.src.fail = func(req int64) (int, error) {
		if req == 1 {
			return int(f.x.Chunks[first].FileLen), nil
		}
		return -1, nil
	}
	b := f.open(t)
	// The reader of the whole file sees the break as an error of the
	// chunk it hit, and a new read fetches from there on.
	_, err := f.read(t, b, "a")
	if err == nil {
		t.Fatal("read across a broken body succeeded")
	}
	got, err := f.read(t, b, "a")
	if err != nil || !bytes.Equal(got, f.nar[n.NarOffset:n.NarOffset+n.Size]) {
		t.Fatalf("second read: %v", err)
	}
	if !b.Complete(first, last) {
		t.Fatal("not complete after a successful read")
	}
}

func TestCorruptChunkIsRememberedAndNotServed(t *testing.T) {
	f := newFixture(t)
	n := f.file("c")
	first, _ := f.x.Span(n.NarOffset, n.Size)
	c := f.x.Chunks[first]
	// Replace the chunk's frame by one of the same length, wrong bytes.
	wrong := bytes.Clone(f.src.obj)
	for i := c.FileOffset; i < c.FileOffset+c.FileLen; i++ {
		wrong[i] ^= 0x55
	}
	f.src.obj = wrong
	b := f.open(t)
	if _, err := f.read(t, b, "c"); !errors.Is(err, ErrChunk) {
		t.Fatalf("read of a corrupt chunk: %v, want ErrChunk", err)
	}
	before := f.src.requests.Load()
	if _, err := f.read(t, b, "c"); !errors.Is(err, ErrChunk) {
		t.Fatalf("second read: %v", err)
	}
	if f.src.requests.Load() != before {
		t.Error("a corrupt chunk was fetched again at once")
	}
	// Nothing of it is marked on disk.
	marks, _ := os.ReadFile(filepath.Join(f.dir, MarksFile))
	if marks[first] != 0 {
		t.Error("a corrupt chunk was marked written")
	}
}

func TestConcurrentReadersShareRequests(t *testing.T) {
	f := newFixture(t)
	f.src.delay = 20 * time.Millisecond
	b := f.open(t)
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, name := range []string{"a", "b", "c", "d"} {
				got, err := f.read(t, b, name)
				n := f.file(name)
				if err != nil || !bytes.Equal(got, f.nar[n.NarOffset:n.NarOffset+n.Size]) {
					t.Errorf("%s: %v", name, err)
				}
			}
		}()
	}
	wg.Wait()
	if n := f.src.requests.Load(); n > int64(len(f.x.Chunks)) {
		t.Errorf("%d requests for %d chunks", n, len(f.x.Chunks))
	}
}

func TestReaderGivingUpDoesNotCancelTheFetch(t *testing.T) {
	f := newFixture(t)
	f.src.delay = 200 * time.Millisecond
	b := f.open(t)
	n := f.file("b")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := b.ReadAt(ctx, make([]byte, n.Size), n.NarOffset, 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("impatient reader: %v", err)
	}
	// The next reader finds the same request, not a new one.
	if _, err := f.read(t, b, "b"); err != nil {
		t.Fatal(err)
	}
	if r := f.src.requests.Load(); r != 1 {
		t.Errorf("%d requests, want 1", r)
	}
}

func TestClaimsAreChecked(t *testing.T) {
	f := newFixture(t)
	b := f.open(t)
	if _, err := f.read(t, b, "d"); err != nil {
		t.Fatal(err)
	}
	b.Close()
	// Damage the blob where d lives; its marks still say written.
	n := f.file("d")
	bf, _ := os.OpenFile(filepath.Join(f.dir, BlobFile), os.O_RDWR, 0)
	bf.WriteAt([]byte("damage"), n.NarOffset+10)
	bf.Close()
	before := f.src.requests.Load()
	b2 := f.open(t)
	got, err := f.read(t, b2, "d")
	if err != nil || !bytes.Equal(got, f.nar[n.NarOffset:n.NarOffset+n.Size]) {
		t.Fatalf("damaged claim served: %v", err)
	}
	if f.src.requests.Load() == before {
		t.Error("damaged chunk was not fetched again")
	}
	// The undamaged chunks of another file are claims that hold.
	before = f.src.requests.Load()
	b3 := f.open(t)
	if _, err := f.read(t, b3, "d"); err != nil {
		t.Fatal(err)
	}
	if f.src.requests.Load() != before {
		t.Error("verified chunks on disk were fetched again")
	}
}

// TestPrefetchYieldsToReaders: background runs wait for a slot before
// decoding, except a run holding a chunk a reader waits for; once slots
// free up, the rest of the blob fills in.
func TestPrefetchYieldsToReaders(t *testing.T) {
	f := newFixture(t)
	slots := make(chan struct{}, 1)
	slots <- struct{}{} // every slot taken: background runs wait
	b := f.openWith(t, Options{Background: slots})
	b.Prefetch(0, len(f.x.Chunks), 0)
	time.Sleep(50 * time.Millisecond)
	if b.Complete(0, 1) {
		t.Fatal("a background run decoded without a slot")
	}
	// A reader of the last file needs chunks of a waiting run.
	got, err := f.read(t, b, "d")
	if err != nil {
		t.Fatal(err)
	}
	n := f.file("d")
	if !bytes.Equal(got, f.nar[n.NarOffset:n.NarOffset+n.Size]) {
		t.Fatal("wrong bytes")
	}
	if b.Complete(0, 1) {
		t.Error("runs no reader waited for did not wait for a slot")
	}
	<-slots
	deadline := time.Now().Add(5 * time.Second)
	for !b.Complete(0, len(f.x.Chunks)) {
		if time.Now().After(deadline) {
			t.Fatal("the prefetch did not complete once a slot was free")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if r := f.src.requests.Load(); r > int64(len(f.x.Chunks)) {
		t.Errorf("%d requests for %d chunks: chunks fetched twice", r, len(f.x.Chunks))
	}
}
