package fetch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/remote/blob"
	"github.com/narfs/narfs/remote/internal/layout"
	"github.com/narfs/narfs/remote/internal/trust"
	"github.com/narfs/narfs/remote/localcache"
	"github.com/narfs/narfs/remote/narinfo"
	"github.com/narfs/narfs/remote/storepath"
)

// fixture is one path of a fixture cache: its narinfo and its NAR.
type fixture struct {
	ni   *narinfo.NarInfo
	data []byte
}

// fixtures reads the paths of a fixture cache whose NARs are stored
// uncompressed.
func fixtures(t testing.TB, dir string) []fixture {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.narinfo"))
	if err != nil || len(names) == 0 {
		t.Fatalf("no narinfo in %s (%v)", dir, err)
	}
	var out []fixture
	for _, name := range names {
		text, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		ni, err := narinfo.Parse(text)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if ni.EffectiveCompression() != "none" {
			t.Fatalf("%s: compression %s", name, ni.Compression)
		}
		data, err := os.ReadFile(filepath.Join(dir, ni.URL))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, fixture{ni, data})
	}
	return out
}

// unsigned returns a narinfo of data (NarSize, NarHash, uncompressed),
// trusted without a signature as --no-require-sigs does.
func unsigned(t testing.TB, data []byte) *trust.Path {
	t.Helper()
	sum := sha256.Sum256(data)
	ni := &narinfo.NarInfo{URL: "nar/x.nar", Compression: "none", NarHash: storepath.Hash{Algo: "sha256", Digest: sum[:]}, NarSize: int64(len(data))}
	p, err := trust.Judge(ni, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func openCache(t testing.TB) *localcache.Cache {
	t.Helper()
	c, err := localcache.Open(t.TempDir(), 1<<30, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// extract runs NAR over data into a pending entry of c, aborted at the
// end of the test; it returns the entry's directory too.
func extract(t testing.TB, c *localcache.Cache, body Body, p *trust.Path) (*trust.Listing, []Own, string, error) {
	t.Helper()
	pend, err := c.Begin()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pend.Abort)
	l, owns, err := NAR(context.Background(), body, p, pend)
	return l, owns, filepath.Dir(pend.Root()), err
}

// checkEntry checks a pending entry NAR accepted: the blob of NarSize
// bytes, every file where readers look for it, each own copy with the
// record of its hash and reported in owns, and listing.json the listing.
func checkEntry(t *testing.T, dir string, l *trust.Listing, owns []Own, data []byte) {
	t.Helper()
	if !nar.SameTree(l.Tree().Root, buildListing(t, data).Root) {
		t.Fatal("the verified listing differs from BuildListing's")
	}
	if fi, err := os.Stat(filepath.Join(dir, blob.BlobFile)); err != nil || fi.Size() != int64(len(data)) {
		t.Fatalf("blob: %v, %v; want %d bytes", fi, err, len(data))
	}
	checkFiles(t, dir, l.Tree(), data)
	meta, err := os.ReadFile(filepath.Join(dir, layout.ListingMeta))
	if err != nil {
		t.Fatal(err)
	}
	rec, err := trust.Recorded(meta)
	if err != nil || !nar.SameTree(rec.Tree().Root, l.Tree().Root) {
		t.Fatalf("listing.json does not decode to the verified listing (%v)", err)
	}
	own := map[string]bool{}
	for _, o := range owns {
		own[o.Name] = true
		fi, err := os.Stat(filepath.Join(dir, o.Name))
		if err != nil || !os.SameFile(fi, o.Info) || fi.Size() != o.Info.Size() {
			t.Errorf("own file %s: %v; not the file reported (%v)", o.Name, err, o.Info)
		}
		content, _ := os.ReadFile(filepath.Join(dir, o.Name))
		sum := sha256.Sum256(content)
		got, _ := os.ReadFile(filepath.Join(dir, layout.OwnSumName(o.Name)))
		if want := hex.EncodeToString(sum[:]) + "\n"; string(got) != want {
			t.Errorf("%s: record %q, want %q", layout.OwnSumName(o.Name), got, want)
		}
	}
	for _, name := range dirEntries(t, dir) {
		switch {
		case name == blob.BlobFile || name == layout.ListingMeta:
		case strings.HasPrefix(name, "f-"):
			if !own[strings.TrimSuffix(name, ".sha256")] {
				t.Errorf("%s in the entry, not among the own files reported", name)
			}
		case name == "root" || name == "meta" || name == "lock":
		default:
			t.Errorf("NAR wrote %q into the entry", name)
		}
	}
}

func buildListing(t testing.TB, data []byte) *nar.Listing {
	t.Helper()
	l, err := nar.BuildListing(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// Every fixture NAR, input-addressed or content-addressed (flat, text,
// recursive), extracts and verifies.
func TestNARFixtures(t *testing.T) {
	c := openCache(t)
	for _, dir := range []string{filepath.Join(fixtureDir, "cache-none"), caCacheDir} {
		for _, f := range fixtures(t, dir) {
			t.Run(f.ni.StorePath.String(), func(t *testing.T) {
				p, err := trust.Judge(f.ni, nil, dir == filepath.Join(fixtureDir, "cache-none"))
				if err != nil {
					t.Fatal(err)
				}
				l, owns, edir, err := extract(t, c, Body{R: bytes.NewReader(f.data)}, p)
				if err != nil {
					t.Fatal(err)
				}
				checkEntry(t, edir, l, owns, f.data)
			})
		}
	}
}

// TestNARLayout: large files deep inside (offsets beyond their sizes),
// small files between them, an empty file and a large file at the very
// end: every file reads back from the blob or its own file, and only the
// large ones have one.
func TestNARLayout(t *testing.T) {
	var buf bytes.Buffer
	w := nar.NewWriter(&buf)
	w.Directory()
	fill := func(n int, seed byte) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = seed + byte(i*7)
		}
		return b
	}
	sizes := []int{3 << 20, 10, 0, ownFileMin, ownFileMin - 1, 5000, 2<<20 + 3}
	large := 0
	for i, size := range sizes {
		w.Entry(string(rune('a' + i)))
		w.File(i%2 == 1, int64(size), bytes.NewReader(fill(size, byte(i))))
		if size >= ownFileMin {
			large++
		}
	}
	w.EndDirectory()
	w.Close()
	data := buf.Bytes()
	l, owns, dir, err := extract(t, openCache(t), Body{R: bytes.NewReader(data)}, unsigned(t, data))
	if err != nil {
		t.Fatal(err)
	}
	checkEntry(t, dir, l, owns, data)
	if len(owns) != large {
		t.Errorf("%d own files, want %d (files of %d bytes or more)", len(owns), large, ownFileMin)
	}
}

// What is not the NAR the narinfo vouches for is ErrCorrupt, and leaves
// no listing.json.
func TestNARCorrupt(t *testing.T) {
	f := fixtures(t, filepath.Join(fixtureDir, "cache-none"))[0]
	good := f.data
	p := unsigned(t, good)
	flipped := bytes.Clone(good)
	flipped[firstContents(t, good)] ^= 1
	bad := bytes.Clone(good)
	copy(bad[8:], "not-a-NAR") // the magic's string contents
	other := unsigned(t, append(bytes.Clone(good[:len(good)-1]), good[len(good)-1]^1))

	wrongSize := func(delta int64) *trust.Path {
		q := *p
		ni := *p.NarInfo
		ni.NarSize += delta
		q.NarInfo = &ni
		return &q
	}
	for _, c := range []struct {
		name string
		data []byte
		p    *trust.Path
		msg  []string // what the message names
	}{
		{"flipped byte", flipped, p, []string{p.NarInfo.NarHash.String(), unsigned(t, flipped).NarInfo.NarHash.String()}},
		{"truncated", good[:len(good)-8], p, nil},
		{"trailing zeros", append(bytes.Clone(good), make([]byte, 8)...), p, nil},
		{"trailing garbage", append(bytes.Clone(good), "trailing garbage after the NAR"...), p, nil},
		{"trailing MiB", append(bytes.Clone(good), make([]byte, 1<<20)...), p, nil},
		{"wrong NarHash", good, other, []string{other.NarInfo.NarHash.String()}},
		{"NarSize smaller", good, wrongSize(-8), nil},
		{"NarSize larger", good, wrongSize(8), nil},
		{"malformed", bad, unsigned(t, bad), nil}, // hashes match the garbage: only the parser objects
		{"empty", nil, unsigned(t, nil), nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := &countingReader{r: bytes.NewReader(c.data)}
			_, _, dir, err := extract(t, openCache(t), Body{R: r}, c.p)
			if !errors.Is(err, trust.ErrCorrupt) || errors.Is(err, localcache.ErrLocal) {
				t.Fatalf("NAR = %v, want ErrCorrupt", err)
			}
			for _, s := range c.msg {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not name %s", err, s)
				}
			}
			if _, err := os.Stat(filepath.Join(dir, layout.ListingMeta)); err == nil {
				t.Error("listing.json written for a NAR that failed")
			}
			// The excess stops the download: NarSize+1 bytes decompressed,
			// read in buffers.
			if r.n > int64(len(good))+2<<20 {
				t.Errorf("read %d bytes of a %d byte NAR", r.n, len(good))
			}
		})
	}
}

// A flat content address checks the file's contents, not the NAR.
func TestNARCorruptCA(t *testing.T) {
	for _, f := range fixtures(t, caCacheDir) {
		p, err := trust.Judge(f.ni, nil, false)
		if err != nil || p.CA == nil {
			t.Fatalf("%s: %v, CA %v", f.ni.StorePath, err, p)
		}
		t.Run(f.ni.StorePath.String(), func(t *testing.T) {
			data := bytes.Clone(f.data)
			data[firstContents(t, data)] ^= 1
			// NarHash and NarSize match the changed NAR: only the CA differs.
			q := *p
			ni := *p.NarInfo
			sum := sha256.Sum256(data)
			ni.NarHash = storepath.Hash{Algo: "sha256", Digest: sum[:]}
			q.NarInfo = &ni
			_, _, _, err := extract(t, openCache(t), Body{R: bytes.NewReader(data)}, &q)
			if !errors.Is(err, trust.ErrCorrupt) {
				t.Fatalf("NAR = %v, want ErrCorrupt", err)
			}
		})
	}
}

// Compression and encoding: a NAR stored compressed differently than its
// narinfo says is corrupt; an unknown transport encoding is the server's
// failure, not the data's.
func TestNARDecoders(t *testing.T) {
	f := fixtures(t, filepath.Join(fixtureDir, "cache-none"))[0]
	p := unsigned(t, f.data)
	q := *p
	ni := *p.NarInfo
	ni.Compression = "xz"
	q.NarInfo = &ni
	if _, _, _, err := extract(t, openCache(t), Body{R: bytes.NewReader(f.data)}, &q); !errors.Is(err, trust.ErrCorrupt) {
		t.Errorf("an uncompressed NAR said to be xz: %v, want ErrCorrupt", err)
	}
	ni.Compression = "lzip"
	if _, _, _, err := extract(t, openCache(t), Body{R: bytes.NewReader(f.data)}, &q); !errors.Is(err, trust.ErrCorrupt) {
		t.Errorf("an unknown compression: %v, want ErrCorrupt", err)
	}
	_, _, _, err := extract(t, openCache(t), Body{R: bytes.NewReader(f.data), Encoding: "x-unknown"}, p)
	if err == nil || errors.Is(err, trust.ErrCorrupt) {
		t.Errorf("an unknown Content-Encoding: %v, want an error that is not ErrCorrupt", err)
	}
}

// A body that fails mid-way is the network's failure (retryable), even
// though the NAR it delivered is then short: not ErrCorrupt.
func TestNARBodyError(t *testing.T) {
	f := fixtures(t, filepath.Join(fixtureDir, "cache-none"))[0]
	reset := errors.New("connection reset")
	r := io.MultiReader(bytes.NewReader(f.data[:len(f.data)/2]), &failReader{reset})
	_, _, _, err := extract(t, openCache(t), Body{R: r}, unsigned(t, f.data))
	if !errors.Is(err, reset) || errors.Is(err, trust.ErrCorrupt) || errors.Is(err, localcache.ErrLocal) {
		t.Fatalf("NAR = %v, want the body's error only", err)
	}
}

// A failure of the local disk while the NAR is written is ErrLocal, not
// the cache's fault.
func TestNARLocalError(t *testing.T) {
	var buf bytes.Buffer
	w := nar.NewWriter(&buf)
	w.File(false, 2*ownFileMin, bytes.NewReader(make([]byte, 2*ownFileMin)))
	w.Close()
	data := buf.Bytes()
	pend, err := openCache(t).Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer pend.Abort()
	// Something already holds the own file's name: creating it fails
	// half-way through the NAR.
	name := layout.OwnFileName(buildListing(t, data).Root.NarOffset)
	if err := os.Mkdir(filepath.Join(filepath.Dir(pend.Root()), name), 0o755); err != nil {
		t.Fatal(err)
	}
	_, _, err = NAR(context.Background(), Body{R: bytes.NewReader(data)}, unsigned(t, data), pend)
	if !errors.Is(err, localcache.ErrLocal) || errors.Is(err, trust.ErrCorrupt) {
		t.Fatalf("NAR = %v, want ErrLocal", err)
	}
}

func TestLocalIOError(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{&os.PathError{Op: "write", Path: "blob", Err: syscall.ENOSPC}, true},
		{fmt.Errorf("x: %w", &os.LinkError{Op: "rename", Old: "a", New: "b", Err: syscall.EIO}), true},
		{fmt.Errorf("%w: disk", localcache.ErrLocal), true},
		{errors.New("bad NAR magic"), false},
		{fmt.Errorf("%w: short", trust.ErrCorrupt), false},
	} {
		if got := LocalIOError(c.err); got != c.want {
			t.Errorf("LocalIOError(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

// NAR stops the download before it waits for its goroutines, so that it
// returns on bad data while the body would block; and when ctx is done.
func TestNARStops(t *testing.T) {
	garbage := bytes.Repeat([]byte("not a NAR "), 100<<10) // more than a read-ahead buffer
	b := newBlockingBody(garbage)
	p := unsigned(t, garbage)
	p.NarInfo.NarSize = math.MaxInt64 // nothing stops early but the parser
	_, _, _, err := extract(t, openCache(t), Body{R: b, Stop: b.stop}, p)
	if !errors.Is(err, trust.ErrCorrupt) {
		t.Errorf("NAR of garbage = %v, want ErrCorrupt", err)
	}
	if !b.stopped() {
		t.Error("NAR returned without stopping the download")
	}

	b = newBlockingBody(nil)
	ctx, cancel := context.WithCancel(context.Background())
	pend, err := openCache(t).Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer pend.Abort()
	time.AfterFunc(10*time.Millisecond, cancel)
	_, _, err = NAR(ctx, Body{R: b, Stop: b.stop}, p, pend)
	if !errors.Is(err, errStopped) {
		t.Errorf("NAR with ctx cancelled = %v, want the body's error", err)
	}
}

func TestDeadline(t *testing.T) {
	const timeout = 30 * time.Second
	if got := Deadline(timeout, 1<<20, 10<<20); got != timeout+10*time.Second {
		t.Errorf("10 MiB at 1 MiB/s: %v", got)
	}
	if got := Deadline(timeout, 0, 0); got != timeout {
		t.Errorf("an empty NAR: %v, want the timeout", got)
	}
	if got := Deadline(timeout, 0, math.MaxInt64); got != math.MaxInt64 {
		t.Errorf("NarSize MaxInt64: %v, want no overflow (MaxInt64)", got)
	}
	if Deadline(timeout, 0, 1<<40) <= Deadline(timeout, 1<<30, 1<<40) {
		t.Error("minRate ≤ 0 is not the (slow) default rate")
	}
}

// firstContents is the NAR offset of the first byte of a file's contents.
func firstContents(t testing.TB, data []byte) int64 {
	t.Helper()
	var find func(n *nar.Node) int64
	find = func(n *nar.Node) int64 {
		if n.Type == nar.TypeRegular && n.Size > 0 {
			return n.NarOffset
		}
		for _, e := range n.Entries {
			if off := find(e); off > 0 {
				return off
			}
		}
		return 0
	}
	off := find(buildListing(t, data).Root)
	if off == 0 {
		t.Fatal("no file with contents")
	}
	return off
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

type failReader struct{ err error }

func (f *failReader) Read([]byte) (int, error) { return 0, f.err }

var errStopped = errors.New("download stopped")

// blockingBody serves its data, then blocks until stopped, as a network
// body does until its context is cancelled.
type blockingBody struct {
	r    io.Reader
	done chan struct{}
	once sync.Once
}

func newBlockingBody(data []byte) *blockingBody {
	return &blockingBody{r: bytes.NewReader(data), done: make(chan struct{})}
}

func (b *blockingBody) Read(p []byte) (int, error) {
	if n, _ := b.r.Read(p); n > 0 {
		return n, nil
	}
	<-b.done
	return 0, errStopped
}

func (b *blockingBody) stop() { b.once.Do(func() { close(b.done) }) }

func (b *blockingBody) stopped() bool {
	select {
	case <-b.done:
		return true
	default:
		return false
	}
}
