package remote

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/remote/chunkindex"
	"github.com/narfs/narfs/remote/internal/content"
	"github.com/narfs/narfs/remote/storepath"
)

// indexedCache is a copy of a fixture cache in which base is stored the
// way narfs push writes it: a chunked object, a signed index.
type indexedCache struct {
	dir     string
	nar     []byte
	listing *nar.Listing
	x       *chunkindex.Index
	object  []byte // the stored NAR object
	objPath string
}

func makeIndexedCache(t *testing.T, base, comp string) *indexedCache {
	t.Helper()
	dir := copyCache(t, "cache-none")
	data := narBytes(t, base)
	l := buildListing(t, data)
	ends, err := chunkindex.Plan(l, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	var obj bytes.Buffer
	b, err := chunkindex.NewBuilder(&obj, ends, comp, zstd.SpeedDefault)
	if err != nil {
		t.Fatal(err)
	}
	b.Write(data)
	chunks, size, fh, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	ni := readNarinfo(t, dir, hashPart(base))
	ni.URL, ni.Compression, ni.FileSize, ni.FileHash = "nar/indexed.nar."+comp, comp, size, &fh
	x := &chunkindex.Index{StorePath: ni.StorePath.Abs(storepath.DefaultStoreDir), NarHash: ni.NarHash, NarSize: ni.NarSize,
		URL: ni.URL, Compression: comp, FileSize: size, FileHash: fh, Chunks: chunks, Listing: l}
	idx, err := x.Encode()
	if err != nil {
		t.Fatal(err)
	}
	objPath := filepath.Join(dir, ni.URL)
	putFile(t, objPath, obj.Bytes())
	os.MkdirAll(filepath.Join(dir, "index"), 0o755)
	putFile(t, filepath.Join(dir, "index", "x.nidx"), idx)
	ni.Set(chunkindex.KeyURL, "index/x.nidx")
	ni.Set(chunkindex.KeySize, itoa(len(idx)))
	resign(t, ni)
	ni.Set(chunkindex.KeySig, chunkindex.Sign(testSecretKey(t), ni, idx))
	writeNarinfo(t, dir, ni)
	// No .ls: metadata must come from the index.
	os.Remove(filepath.Join(dir, hashPart(base)+".ls"))
	return &indexedCache{dir: dir, nar: data, listing: l, x: x, object: obj.Bytes(), objPath: objPath}
}

func itoa(n int) string { return fmtInt(n) }

// bigFiles returns the regular files of the listing, largest first.
func filesOf(l *nar.Listing) map[string]*nar.Node {
	out := map[string]*nar.Node{}
	var walk func(string, *nar.Node)
	walk = func(p string, n *nar.Node) {
		switch n.Type {
		case nar.TypeRegular:
			out[p] = n
		case nar.TypeDirectory:
			for name, e := range n.Entries {
				q := name
				if p != "" {
					q = p + "/" + name
				}
				walk(q, e)
			}
		}
	}
	walk("", l.Root)
	return out
}

func readChunked(t *testing.T, s *Core, p *PathInfo, sub string) ([]byte, error) {
	t.Helper()
	f, err := s.openChunked(context.Background(), p, sub)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f.Reader(context.Background()))
}

func contentsOf(c *indexedCache, n *nar.Node) []byte {
	return c.nar[n.NarOffset : n.NarOffset+n.Size]
}

func TestIndexedReadsOnlyTheFile(t *testing.T) {
	for _, comp := range []string{"zstd", "none"} {
		t.Run(comp, func(t *testing.T) {
			c := makeIndexedCache(t, pathTree, comp)
			s := openStore(t, c.dir, "", byRanges(t))
			p := mustResolve(t, s, pathTree)
			// Metadata from the index: no .ls, no NAR.
			l, err := s.listing(context.Background(), p)
			if err != nil {
				t.Fatal(err)
			}
			if !nar.SameTree(l.Root, c.listing.Root) {
				t.Fatal("listing differs from the NAR's")
			}
			st := s.Stats()
			if st.IndexGets != 1 || st.ListingGets != 0 || st.NarGets != 0 {
				t.Fatalf("after listing: %+v", st)
			}
			files := filesOf(c.listing)
			var small, large string
			for name, n := range files {
				if n.Size > 0 && n.Size < 4096 && small == "" {
					small = name
				}
				if large == "" || n.Size > files[large].Size {
					large = name
				}
			}
			got, err := readChunked(t, s, p, small)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, contentsOf(c, files[small])) {
				t.Fatal("small file: wrong contents")
			}
			st = s.Stats()
			if st.NarGets != 1 || st.ChunkBytes > 2*chunkindex.TargetChunk+64<<10 {
				t.Fatalf("one small file cost %d requests, %d bytes", st.NarGets, st.ChunkBytes)
			}
			got, err = readChunked(t, s, p, large)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, contentsOf(c, files[large])) {
				t.Fatal("large file: wrong contents")
			}
			if total := s.Stats().ChunkBytes; total >= int64(len(c.object)) && len(files) > 2 {
				t.Errorf("two files fetched the whole object (%d bytes)", total)
			}
		})
	}
}

func TestIndexedEveryFileMatches(t *testing.T) {
	c := makeIndexedCache(t, pathTree, "zstd")
	s := openStore(t, c.dir, "", trustedConfig(t))
	p := mustResolve(t, s, pathTree)
	for name, n := range filesOf(c.listing) {
		got, err := readChunked(t, s, p, name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !bytes.Equal(got, contentsOf(c, n)) {
			t.Fatalf("%s: wrong contents", name)
		}
	}
	// Everything once: no chunk was fetched twice.
	if got := s.Stats().ChunkBytes; got > int64(len(c.object)) {
		t.Errorf("fetched %d bytes of a %d-byte object", got, len(c.object))
	}
}

func TestIndexedTamperedChunk(t *testing.T) {
	c := makeIndexedCache(t, pathTree, "none")
	files := filesOf(c.listing)
	// Flip a byte inside one file's chunk: that file fails, others read.
	var victim string
	for name, n := range files {
		if n.Size > chunkindex.SoloFile {
			victim = name
			break
		}
	}
	if victim == "" {
		t.Skip("fixture has no solo-sized file")
	}
	vn := files[victim]
	data := bytes.Clone(c.object)
	data[vn.NarOffset+vn.Size/2] ^= 0xff
	putFile(t, c.objPath, data)
	s := openStore(t, c.dir, "", trustedConfig(t))
	p := mustResolve(t, s, pathTree)
	if _, err := readChunked(t, s, p, victim); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("tampered file read: %v, want ErrCorrupt", err)
	}
	for name, n := range files {
		first, last := c.x.Span(n.NarOffset, n.Size)
		vf, vl := c.x.Span(vn.NarOffset+vn.Size/2, 1)
		if first < vl && vf < last {
			continue // shares the bad chunk
		}
		got, err := readChunked(t, s, p, name)
		if err != nil || !bytes.Equal(got, contentsOf(c, n)) {
			t.Fatalf("sibling %s: %v", name, err)
		}
	}
	// Not fetched again at once: the failure is remembered. (A read of
	// the file may still fetch its other chunks, which the failed
	// request never reached; once those are in, nothing is asked.)
	readChunked(t, s, p, victim)
	time.Sleep(200 * time.Millisecond)
	before := s.Stats().NarParts + s.Stats().NarGets
	if _, err := readChunked(t, s, p, victim); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("third read of the tampered file: %v", err)
	}
	time.Sleep(100 * time.Millisecond)
	if s.Stats().NarParts+s.Stats().NarGets != before {
		t.Error("a chunk that failed verification was fetched again at once")
	}
}

func TestIndexIgnoredUnlessValid(t *testing.T) {
	for name, spoil := range map[string]func(t *testing.T, c *indexedCache){
		"changed index": func(t *testing.T, c *indexedCache) {
			p := filepath.Join(c.dir, "index", "x.nidx")
			data, _ := os.ReadFile(p)
			data[len(data)-1] ^= 1
			putFile(t, p, data)
		},
		"untrusted key": func(t *testing.T, c *indexedCache) {
			ni := readNarinfo(t, c.dir, hashPart(pathTree))
			sig := ni.GetAll(chunkindex.KeySig)[0]
			ni.Set(chunkindex.KeySig, "someone-else"+sig[len("narfs-test-1"):])
			writeNarinfo(t, c.dir, ni)
		},
		"missing index": func(t *testing.T, c *indexedCache) {
			os.Remove(filepath.Join(c.dir, "index", "x.nidx"))
		},
		"wrong size": func(t *testing.T, c *indexedCache) {
			ni := readNarinfo(t, c.dir, hashPart(pathTree))
			ni.Set(chunkindex.KeySize, "12")
			writeNarinfo(t, c.dir, ni)
		},
	} {
		t.Run(name, func(t *testing.T) {
			c := makeIndexedCache(t, pathTree, "zstd")
			spoil(t, c)
			s := openStore(t, c.dir, "", trustedConfig(t))
			p := mustResolve(t, s, pathTree)
			_, n := firstFile(c.listing)
			if _, err := s.openChunked(context.Background(), p, firstName(c.listing)); !errors.Is(err, errNotIndexed) {
				t.Fatalf("OpenChunked: %v, want errNotIndexed", err)
			}
			// The whole-NAR path still works (the object is an ordinary
			// zstd stream of the NAR).
			f, vn, err := s.openVerified(context.Background(), p, firstName(c.listing))
			if err != nil {
				t.Fatal(err)
			}
			f.Close()
			if vn.Size != n.Size {
				t.Fatal("wrong file")
			}
		})
	}
}

func firstName(l *nar.Listing) string {
	name, _ := firstFile(l)
	return name
}

func TestIndexedRestartAndSharedCache(t *testing.T) {
	c := makeIndexedCache(t, pathTree, "zstd")
	cfg := trustedConfig(t)
	s1 := openStore(t, c.dir, "", cfg)
	p := mustResolve(t, s1, pathTree)
	files := filesOf(c.listing)
	for name := range files {
		if _, err := readChunked(t, s1, p, name); err != nil {
			t.Fatal(err)
		}
	}
	s1.Close()
	// Another process (a new Store) over the same cache dir: the chunks
	// are claims to check, not fetched again.
	s2 := openStore(t, c.dir, "", cfg)
	p2 := mustResolve(t, s2, pathTree)
	for name, n := range files {
		got, err := readChunked(t, s2, p2, name)
		if err != nil || !bytes.Equal(got, contentsOf(c, n)) {
			t.Fatalf("%s after restart: %v", name, err)
		}
	}
	if st := s2.Stats(); st.NarGets != 0 || st.IndexGets != 0 {
		t.Fatalf("after restart: %d NAR requests, %d index requests", st.NarGets, st.IndexGets)
	}
	s2.Close()
	// A blob damaged on disk is caught by that check and fetched again.
	blobs, _ := filepath.Glob(filepath.Join(cfg.CacheDir, "*", "nar", "*-x-*", "blob"))
	if len(blobs) != 1 {
		t.Fatalf("blob files: %v", blobs)
	}
	bf, err := os.OpenFile(blobs[0], os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, n := firstFile(c.listing)
	bf.WriteAt([]byte{^c.nar[n.NarOffset]}, n.NarOffset)
	bf.Close()
	s3 := openStore(t, c.dir, "", cfg)
	p3 := mustResolve(t, s3, pathTree)
	got, err := readChunked(t, s3, p3, firstName(c.listing))
	if err != nil || !bytes.Equal(got, contentsOf(c, n)) {
		t.Fatalf("damaged blob served: %v", err)
	}
	if s3.Stats().NarGets != 1 {
		t.Errorf("damaged chunk: %d requests, want 1", s3.Stats().NarGets)
	}
}

func TestIndexedConcurrentReaders(t *testing.T) {
	c := makeIndexedCache(t, pathTree, "zstd")
	s := openStore(t, c.dir, "", byRanges(t))
	p := mustResolve(t, s, pathTree)
	files := filesOf(c.listing)
	var large string
	for name, n := range files {
		if large == "" || n.Size > files[large].Size {
			large = name
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := readChunked(t, s, p, large)
			if err == nil && !bytes.Equal(got, contentsOf(c, files[large])) {
				err = errors.New("wrong contents")
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	n := files[large]
	first, last := c.x.Span(n.NarOffset, n.Size)
	var want int64
	for _, ch := range c.x.Chunks[first:last] {
		want += ch.FileLen
	}
	if got := s.Stats().ChunkBytes; got != want {
		t.Errorf("32 readers fetched %d bytes, the file's chunks are %d", got, want)
	}
}

func fmtInt(n int) string { return strconv.Itoa(n) }

func TestIndexedLargeFileGetsItsOwnFile(t *testing.T) {
	c := makeIndexedCache(t, pathTree, "zstd")
	s := openStore(t, c.dir, "", trustedConfig(t))
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
	want := contentsOf(c, files[large])
	if got, err := readChunked(t, s, p, large); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("first read: %v", err)
	}
	// Made in the background after the complete read's close.
	var f *content.Chunked
	for i := 0; ; i++ {
		var err error
		if f, err = s.openChunked(context.Background(), p, large); err != nil {
			t.Fatal(err)
		}
		if f.Own() != nil {
			break
		}
		f.Close()
		if i > 200 {
			t.Fatal("no file of its own after a complete read")
		}
		time.Sleep(10 * time.Millisecond)
	}
	defer f.Close()
	got, err := io.ReadAll(f.Own().Reader())
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("own file: %v", err)
	}
	if !f.Own().Own() {
		t.Error("own file is not at offset 0")
	}
	// A file read in part gets none.
	var partial string
	for name, n := range files {
		if n.Size >= MaxRead && name != large {
			partial = name
		}
	}
	if partial != "" {
		pf, err := s.openChunked(context.Background(), p, partial)
		if err != nil {
			t.Fatal(err)
		}
		pf.ReadAt(context.Background(), make([]byte, 4096), 0)
		pf.Close()
		time.Sleep(50 * time.Millisecond)
		pf, _ = s.openChunked(context.Background(), p, partial)
		if pf.Own() != nil {
			t.Error("a partly read file got a file of its own")
		}
		pf.Close()
	}
}

// A path stored in at most IndexedWholeMax bytes is fetched whole in the
// background from its first read, in requests of at most 2 MiB (not one
// per file), every chunk verified; a larger one only as reads need.
func TestIndexedSmallPathFetchedWhole(t *testing.T) {
	c := makeIndexedCache(t, pathTree, "zstd")
	files := filesOf(c.listing)
	var small string
	for name, n := range files {
		if n.Size > 0 && n.Size < 4096 {
			small = name
			break
		}
	}
	for _, whole := range []bool{true, false} {
		t.Run(fmt.Sprintf("whole=%v", whole), func(t *testing.T) {
			cfg := trustedConfig(t)
			if !whole {
				cfg.IndexedWholeMax = int64(len(c.object)) - 1
			}
			s := openStore(t, c.dir, "", cfg)
			p := mustResolve(t, s, pathTree)
			got, err := readChunked(t, s, p, small)
			if err != nil || !bytes.Equal(got, contentsOf(c, files[small])) {
				t.Fatalf("small file: %v", err)
			}
			deadline := time.Now().Add(10 * time.Second)
			for whole && s.Stats().ChunkBytes < int64(len(c.object)) && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			st := s.Stats()
			if !whole {
				if st.ChunkBytes >= int64(len(c.object)) {
					t.Fatalf("a path above the limit was fetched whole (%d bytes)", st.ChunkBytes)
				}
				return
			}
			if st.ChunkBytes != int64(len(c.object)) {
				t.Fatalf("fetched %d of the object's %d bytes", st.ChunkBytes, len(c.object))
			}
			if maxReqs := int64(len(c.object))/(2<<20) + 2; st.NarGets > maxReqs {
				t.Errorf("%d requests for a %d-byte object, want at most %d", st.NarGets, len(c.object), maxReqs)
			}
			// Every file now reads with no request, all bytes right.
			for name, n := range files {
				got, err := readChunked(t, s, p, name)
				if err != nil || !bytes.Equal(got, contentsOf(c, n)) {
					t.Fatalf("%s after the fill: %v", name, err)
				}
			}
			if got := s.Stats().NarGets; got != st.NarGets {
				t.Errorf("reads after the fill made %d requests", got-st.NarGets)
			}
		})
	}
}

// ReadCached gives a file's bytes only once every chunk it spans is
// verified here, and never fetches.
func TestIndexedReadCached(t *testing.T) {
	c := makeIndexedCache(t, pathTree, "zstd")
	s := openStore(t, c.dir, "", byRanges(t))
	p := mustResolve(t, s, pathTree)
	files := filesOf(c.listing)
	var small string
	for name, n := range files {
		if n.Size > 0 && n.Size < 4096 {
			small = name
			break
		}
	}
	f, err := s.openChunked(context.Background(), p, small)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := contentsOf(c, files[small])
	buf := make([]byte, len(want)+10)
	if _, ok := f.ReadCached(buf); ok {
		t.Fatal("ReadCached of a cold file: ok")
	}
	if st := s.Stats(); st.NarGets != 0 {
		t.Fatalf("ReadCached fetched: %+v", st)
	}
	if _, ok := f.ReadCached(buf[:len(want)-1]); ok {
		t.Fatal("ReadCached into a buffer shorter than the file: ok")
	}
	if _, err := io.ReadAll(f.Reader(context.Background())); err != nil {
		t.Fatal(err)
	}
	n, ok := f.ReadCached(buf)
	if !ok || !bytes.Equal(buf[:n], want) {
		t.Fatalf("ReadCached after a read: %v, %d bytes, equal %v", ok, n, bytes.Equal(buf[:n], want))
	}
}
