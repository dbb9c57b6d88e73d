package remote

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sync/singleflight"

	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/remote/internal/flight"
	"github.com/narfs/narfs/remote/internal/pathstate"
	"github.com/narfs/narfs/remote/narinfo"
	"github.com/narfs/narfs/remote/storepath"
)

// buildNAR writes a NAR with fn.
func buildNAR(t testing.TB, fn func(w *nar.Writer)) []byte {
	t.Helper()
	var b bytes.Buffer
	w := nar.NewWriter(&b)
	fn(w)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// caNarinfo is a key-less, genuinely content-addressed (fixed:r:sha256)
// narinfo for an uncompressed NAR: anyone who can write to a cache can
// make one, and narfs trusts it without a signature.
func caNarinfo(t testing.TB, name, url string, data []byte) *narinfo.NarInfo {
	t.Helper()
	sum := sha256.Sum256(data)
	ca := "fixed:r:sha256:" + storepath.EncodeNix32(sum[:])
	sp, err := storepath.FromCA(storepath.DefaultStoreDir, ca, name, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	ni := &narinfo.NarInfo{StorePath: sp, StoreDir: storepath.DefaultStoreDir, CA: ca}
	setNAR(ni, url, data)
	return ni
}

// emptyCache is a directory with a nix-cache-info and a nar/ directory.
func emptyCache(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	putFile(t, filepath.Join(dir, "nix-cache-info"), []byte("StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 40\n"))
	if err := os.Mkdir(filepath.Join(dir, "nar"), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func putListing(t testing.TB, dir, hash, ls string) {
	t.Helper()
	putFile(t, filepath.Join(dir, hash+".ls"), []byte(ls))
}

// Two key-less CA paths share one NAR holding s -> HOSTDIR; the second
// path's unsigned .ls calls s a directory with secret.txt in it. Opening
// <second>/s/secret.txt must never return the host's file: which file is
// opened is decided by the verified NAR of that path alone.
func TestHostFileThroughSharedNAR(t *testing.T) {
	host := t.TempDir()
	secret := []byte("host secret, not in any NAR\n")
	putFile(t, filepath.Join(host, "secret.txt"), secret)
	data := buildNAR(t, func(w *nar.Writer) {
		w.Directory()
		w.Entry("s")
		w.Symlink(host)
		w.EndDirectory()
	})
	dir := emptyCache(t)
	putFile(t, filepath.Join(dir, "nar", "shared.nar"), data)
	first := caNarinfo(t, "first", "nar/shared.nar", data)
	second := caNarinfo(t, "second", "nar/shared.nar", data)
	writeNarinfo(t, dir, first)
	writeNarinfo(t, dir, second)
	lie := fmt.Sprintf(`{"version":1,"root":{"type":"directory","entries":{"s":{"type":"directory","entries":{"secret.txt":{"type":"regular","size":%d,"narOffset":400}}}}}}`, len(secret))
	putListing(t, dir, second.StorePath.Hash, lie)

	s := openStore(t, dir, "", Config{RequireSigs: true})
	ctx := context.Background()
	p1 := mustResolve(t, s, first.StorePath.String())
	if _, err := s.materialize(ctx, p1); err != nil {
		t.Fatal(err)
	}
	p2 := mustResolve(t, s, second.StorePath.String())
	f, err := s.openFile(ctx, p2, "s/secret.txt")
	if err == nil {
		got, _ := io.ReadAll(f.Reader())
		f.Close()
		t.Fatalf("OpenFile through a symlink the .ls calls a directory succeeded and read %q", got)
	}
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("OpenFile = %v, want ErrNotFound (the verified NAR has no such file)", err)
	}
	// Once verified, the listing is the NAR's: s is a symlink.
	l, err := s.listing(ctx, p2)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := l.Find("s"); err != nil || n.Type != nar.TypeSymlink || n.Target != host {
		t.Errorf("after verification s is %+v, %v; want the NAR's symlink to %s", n, err, host)
	}
}

// A store path that is a single symlink: its .ls may claim any target.
// The mount's lookup (Root) answers only what the verified NAR says.
func TestSymlinkPathTargetIsVerified(t *testing.T) {
	dir := copyCache(t, "cache-none")
	hash := hashPart(pathLink)
	putListing(t, dir, hash, `{"version":1,"root":{"type":"symlink","target":"/etc/shadow"}}`)
	s := openStore(t, dir, "", trustedConfig(t))
	p := mustResolve(t, s, pathLink)
	n, err := s.Root(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	want := buildListing(t, narBytes(t, pathLink)).Root.Target
	if n.Type != nar.TypeSymlink || n.Target != want {
		t.Errorf("Root = %+v, want the NAR's symlink to %q", n, want)
	}
	// Without a .ls, the NAR's first header is not trusted either.
	removeFile(t, filepath.Join(dir, hash+".ls"))
	s2 := openStore(t, dir, "", trustedConfig(t))
	if n, err := s2.Root(context.Background(), mustResolve(t, s2, pathLink)); err != nil || n.Target != want {
		t.Errorf("Root without .ls = %+v, %v", n, err)
	}
	if st := s2.Stats(); st.Fetches != 1 {
		t.Errorf("Fetches = %d, want 1: the symlink's NAR is verified before its target is shown", st.Fetches)
	}
}

// A key-less CA twin with the NarHash of a genuine signed path but a URL
// to a bad NAR fails on its own; the genuine path is not affected.
func TestKeylessTwinDoesNotBlockGenuinePath(t *testing.T) {
	dir := copyCache(t, "cache-none")
	genuine := readNarinfo(t, dir, hashPart(pathLib))
	good, err := os.ReadFile(filepath.Join(dir, genuine.URL))
	if err != nil {
		t.Fatal(err)
	}
	twin := caNarinfo(t, "twin", "nar/bad.nar", good)
	bad := bytes.Clone(good)
	bad[len(bad)/2] ^= 0xff
	putFile(t, filepath.Join(dir, "nar", "bad.nar"), bad)
	writeNarinfo(t, dir, twin)

	s := openStore(t, dir, "", trustedConfig(t))
	ctx := context.Background()
	tp := mustResolve(t, s, twin.StorePath.String())
	if tp.NarInfo.NarHash.String() != genuine.NarHash.String() {
		t.Fatal("the twin does not share the genuine NarHash")
	}
	if _, err := s.materialize(ctx, tp); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("twin Materialize = %v, want ErrCorrupt", err)
	}
	if _, err := s.materialize(ctx, mustResolve(t, s, pathLib)); err != nil {
		t.Errorf("genuine path after its twin failed: %v, want success", err)
	}
}

// Trailing bytes after the NAR, covered by NarHash and NarSize (so only
// the parser can see them), are rejected however few there are.
func TestTrailingDataAfterNAR(t *testing.T) {
	for _, extra := range []int{1, 7, 8, 100, 4096} {
		t.Run(fmt.Sprint(extra), func(t *testing.T) {
			dir := emptyCache(t)
			data := append(bytes.Clone(narBytes(t, pathTreeSmall)), bytes.Repeat([]byte{0}, extra)...)
			putFile(t, filepath.Join(dir, "nar", "x.nar"), data)
			ni := caNarinfo(t, "trailing", "nar/x.nar", data)
			writeNarinfo(t, dir, ni)
			s := openStore(t, dir, "", Config{RequireSigs: true})
			if _, err := s.materialize(context.Background(), mustResolve(t, s, ni.StorePath.String())); !errors.Is(err, ErrCorrupt) {
				t.Errorf("NAR + %d bytes: %v, want ErrCorrupt", extra, err)
			}
		})
	}
}

// A .ls with far more nodes than the signed NarSize can hold is refused
// without keeping it; the NAR's listing is used instead.
func TestListingTooBigForNarSize(t *testing.T) {
	dir := copyCache(t, "cache-none")
	var b strings.Builder
	b.WriteString(`{"version":1,"root":{"type":"directory","entries":{`)
	for i := range 200000 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"f%d":{"type":"regular","size":0}`, i)
	}
	b.WriteString(`}}}`)
	putListing(t, dir, hashPart(pathTreeSmall), b.String())
	s := openStore(t, dir, "", trustedConfig(t))
	p := mustResolve(t, s, pathTreeSmall)
	l, err := s.listing(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Root.Entries) > 1000 {
		t.Errorf("the listing has %d entries: the oversized .ls was used", len(l.Root.Entries))
	}
	if got := s.caches[0].listings.Usage(); got > 8<<20 {
		t.Errorf("listing memory %d bytes after refusing the .ls", got)
	}
}

// Listings are kept within a byte budget, not an entry count.
func TestListingMemoryBudget(t *testing.T) {
	c := pathstate.New(1 << 20)
	for i := range 100 {
		c.SetUnverified(fmt.Sprint(i), &nar.Listing{Root: &nar.Node{Type: nar.TypeRegular}}, 100<<10)
	}
	if got := c.Usage(); got > 1<<20 {
		t.Errorf("usage %d bytes, budget 1 MiB", got)
	}
	if _, ok := c.Get("99"); !ok {
		t.Error("the most recent listing was evicted")
	}
	if !c.Fits(200<<10) || c.Fits(300<<10) {
		t.Error("a single listing may take at most a quarter of the budget")
	}
}

// Hostile numbers in a key-less CA narinfo: the fetch fails cleanly, never
// panics (NarSize near MaxInt64 overflowed the verifier's arithmetic).
func TestHostileNarSize(t *testing.T) {
	for _, size := range []int64{math.MaxInt64, math.MaxInt64 - 1, 1 << 62, 1} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			dir := emptyCache(t)
			data := narBytes(t, pathTreeSmall)
			putFile(t, filepath.Join(dir, "nar", "x.nar"), data)
			ni := caNarinfo(t, "huge", "nar/x.nar", data)
			ni.NarSize = size
			ni.FileSize = size
			writeNarinfo(t, dir, ni)
			s := openStore(t, dir, "", Config{RequireSigs: true})
			p, err := s.Resolve(context.Background(), ni.StorePath.String())
			if err != nil {
				return // refusing the narinfo outright is fine too
			}
			if _, err := s.materialize(context.Background(), p); !errors.Is(err, ErrCorrupt) {
				t.Errorf("Materialize = %v, want ErrCorrupt", err)
			}
			if _, err := s.listing(context.Background(), p); err == nil {
				t.Error("Listing succeeded for a NAR that does not match NarSize")
			}
		})
	}
}

// A panic inside shared work (which runs on its own goroutine, where it
// would kill the process) becomes an error for every waiter.
func TestPanicInSharedWorkIsAnError(t *testing.T) {
	s := openStore(t, filepath.Join(fixtureDir, "cache-none"), "", trustedConfig(t))
	_, err := flight.Shared(context.Background(), s.log, new(singleflight.Group), "k", "test", func() (any, error) {
		panic("boom")
	})
	if !errors.Is(err, ErrBug) {
		t.Errorf("err = %v, want ErrBug", err)
	}
}
