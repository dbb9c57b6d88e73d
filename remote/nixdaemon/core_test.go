package nixdaemon

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/remote"
	"github.com/narfs/narfs/remote/backend"
	"github.com/narfs/narfs/remote/chunkindex"
	"github.com/narfs/narfs/remote/narinfo"
	"github.com/narfs/narfs/remote/upload"
)

// openCore opens the cache in dir (trusting the fixtures' key, requiring
// signatures) as a Core, with its local cache in cacheDir.
func openCore(t *testing.T, dir, cacheDir string) (*Core, *remote.Core) {
	t.Helper()
	keys := fixtureKeys(t)
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	core, err := remote.Open(context.Background(), []string{"file://" + abs},
		remote.Config{TrustedKeys: keys, RequireSigs: true, CacheDir: cacheDir, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { core.Close() })
	return NewCore(core, keys), core
}

// TestCoreValidity: a path is valid exactly when the mount would serve it:
// in an unsigned cache only genuine content-addressed paths are, and they
// report no signature but their (verified) CA.
func TestCoreValidity(t *testing.T) {
	c, _ := openCore(t, filepath.Join(fixtureDir, "cache-unsigned"), t.TempDir())
	ctx := context.Background()
	if _, ok, err := c.QueryPathInfo(ctx, pathApp); err != nil || ok {
		t.Errorf("unsigned input-addressed path: ok %v err %v, want not valid", ok, err)
	}
	info, ok, err := c.QueryPathInfo(ctx, pathTree)
	if err != nil || !ok {
		t.Fatalf("unsigned content-addressed path: ok %v err %v, want valid", ok, err)
	}
	if len(info.Sigs) != 0 || !strings.HasPrefix(info.CA, "fixed:r:sha256:") {
		t.Errorf("sigs %q ca %q", info.Sigs, info.CA)
	}
	if _, ok, err := c.QueryPathInfo(ctx, pathNone); err != nil || ok {
		t.Errorf("absent path: ok %v err %v", ok, err)
	}
	if p, ok, err := c.QueryPathFromHashPart(ctx, "14lgl3x038jkwcgv2y8x0wia7gsicsj9"); err != nil || !ok || p != pathTree {
		t.Errorf("QueryPathFromHashPart = %q %v %v", p, ok, err)
	}
	if _, ok, err := c.QueryPathFromHashPart(ctx, "ymydngcp0syr2bpvigprvim861rmkrvc"); err != nil || ok {
		t.Errorf("QueryPathFromHashPart of an untrusted path: ok %v err %v", ok, err)
	}
}

// TestCoreCAOnlyGenuine: a CA line added to a signed narinfo (not covered
// by the signature, and not recomputing the store path) is not reported.
func TestCoreCAOnlyGenuine(t *testing.T) {
	cache := filepath.Join(t.TempDir(), "cache")
	if err := os.CopyFS(cache, os.DirFS(filepath.Join(fixtureDir, "cache-xz"))); err != nil {
		t.Fatal(err)
	}
	ni := filepath.Join(cache, "ymydngcp0syr2bpvigprvim861rmkrvc.narinfo")
	data, err := os.ReadFile(ni)
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(ni, 0o644)
	bogus := "CA: fixed:r:sha256:0c814g80adxsnkihfv2q3846qlmakybw7z8abp7vcmn97i0m4la3\n"
	if err := os.WriteFile(ni, append(data, bogus...), 0o644); err != nil {
		t.Fatal(err)
	}
	c, _ := openCore(t, cache, t.TempDir())
	info, ok, err := c.QueryPathInfo(context.Background(), pathApp)
	if err != nil || !ok {
		t.Fatalf("signed path: ok %v err %v", ok, err)
	}
	if info.CA != "" {
		t.Errorf("unverified CA reported: %q", info.CA)
	}
	if len(info.Sigs) != 1 || !strings.HasPrefix(info.Sigs[0], "narfs-test-1:") {
		t.Errorf("sigs %q", info.Sigs)
	}
}

// TestCoreNarHeldBack: when the local copy no longer matches the signed
// NarHash (a byte changed on disk under narfs), NarFromPath fails with
// ErrCorrupt and the client never gets the NAR's closing token.
func TestCoreNarHeldBack(t *testing.T) {
	cacheDir := t.TempDir()
	c, core := openCore(t, filepath.Join(fixtureDir, "cache-xz"), cacheDir)
	ctx := context.Background()
	want, err := os.ReadFile(filepath.Join(fixtureDir, "cache-none", "nar", "0c814g80adxsnkihfv2q3846qlmakybw7z8abp7vcmn97i0m4la3.nar"))
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if err := c.NarFromPath(ctx, pathTree, &got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Fatalf("NAR differs from the cache's (%d vs %d bytes)", got.Len(), len(want))
	}

	// Change one content byte of the verified copy, in place.
	pi, err := core.Resolve(ctx, strings.TrimPrefix(pathTree, "/nix/store/"))
	if err != nil {
		t.Fatal(err)
	}
	l, err := core.VerifiedListing(ctx, pi)
	if err != nil {
		t.Fatal(err)
	}
	off := firstContent(l.Root)
	if off <= 0 {
		t.Fatal("no file with contents")
	}
	blobs, _ := filepath.Glob(filepath.Join(cacheDir, "*", "nar", "*", "blob"))
	if len(blobs) != 1 {
		t.Fatalf("blobs %q; the local layout changed, update the test", blobs)
	}
	f, err := os.OpenFile(blobs[0], os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := []byte{0}
	f.ReadAt(b, off)
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
	f.Close()

	got.Reset()
	err = c.NarFromPath(ctx, pathTree, &got)
	if !errors.Is(err, remote.ErrCorrupt) {
		t.Fatalf("err %v, want ErrCorrupt", err)
	}
	if got.Len() != len(want)-held {
		t.Errorf("%d bytes out, want all but the last %d (%d)", got.Len(), held, len(want)-held)
	}
}

func firstContent(n *nar.Node) int64 {
	switch n.Type {
	case nar.TypeRegular:
		if n.Size > 0 {
			return n.NarOffset
		}
	case nar.TypeDirectory:
		for _, e := range n.Entries {
			if off := firstContent(e); off > 0 {
				return off
			}
		}
	}
	return 0
}

func TestHeldWriter(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		data := make([]byte, r.IntN(200))
		for i := range data {
			data[i] = byte(r.IntN(256))
		}
		var out bytes.Buffer
		hw := &heldWriter{w: &out, h: nopHash{}}
		for rest := data; len(rest) > 0; {
			n := min(len(rest), r.IntN(40))
			hw.Write(rest[:n])
			rest = rest[n:]
		}
		wantOut := data[:max(0, len(data)-held)]
		if !bytes.Equal(out.Bytes(), wantOut) {
			t.Fatalf("before release: %d bytes out of %d, want %d", out.Len(), len(data), len(wantOut))
		}
		if err := hw.release(); err != nil || !bytes.Equal(out.Bytes(), data) {
			t.Fatalf("after release: %d bytes, want %d", out.Len(), len(data))
		}
	}
}

type nopHash struct{}

func (nopHash) Write(b []byte) (int, error) { return len(b), nil }
func (nopHash) Sum(b []byte) []byte         { return b }
func (nopHash) Reset()                      {}
func (nopHash) Size() int                   { return 0 }
func (nopHash) BlockSize() int              { return 1 }

// indexedFixture copies the xz fixture cache and indexes four of its
// paths with narfs's own writer; it returns the cache and the paths.
func indexedFixture(t *testing.T) (string, []string) {
	t.Helper()
	ctx := context.Background()
	cache := filepath.Join(t.TempDir(), "cache")
	if err := os.CopyFS(cache, os.DirFS(filepath.Join(fixtureDir, "cache-xz"))); err != nil {
		t.Fatal(err)
	}
	filepath.WalkDir(cache, func(p string, d fs.DirEntry, err error) error {
		if d.IsDir() {
			return os.Chmod(p, 0o755)
		}
		return os.Chmod(p, 0o644)
	})
	skData, err := os.ReadFile("../../nar/testdata/keys/narfs-test-1.sk")
	if err != nil {
		t.Fatal(err)
	}
	sk, err := narinfo.ParseSecretKey(strings.TrimSpace(string(skData)))
	if err != nil {
		t.Fatal(err)
	}
	up, err := upload.Open(ctx, "file://"+cache, backend.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	paths := []string{pathTree, pathApp, pathLink, pathFile}
	var hashes []string
	for _, p := range paths {
		hashes = append(hashes, strings.TrimPrefix(p, "/nix/store/")[:32])
	}
	err = up.IndexAll(ctx, hashes, upload.IndexOptions{Key: sk, TempDir: t.TempDir()}, func(r upload.IndexResult) {
		if r.Err != nil {
			t.Errorf("index: %v", r.Err)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return cache, paths
}

// TestCoreNarIndexed: over a cache narfs indexed, the NAR is rebuilt from
// the signed index's listing and chunk-verified file contents, byte for
// byte the cache's NAR.
func TestCoreNarIndexed(t *testing.T) {
	ctx := context.Background()
	cache, paths := indexedFixture(t)
	keys := fixtureKeys(t)
	core, err := remote.Open(ctx, []string{"file://" + cache},
		remote.Config{TrustedKeys: keys, RequireSigs: true, CacheDir: t.TempDir(), Logger: testLogger(t), IndexedWholeMax: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer core.Close()
	c := NewCore(core, keys)
	for _, p := range paths {
		pi, err := core.Resolve(ctx, strings.TrimPrefix(p, "/nix/store/"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(cache, chunkindex.AliasKey(pi.Path.Hash))); err != nil {
			t.Fatalf("%s is not indexed: %v", p, err)
		}
		want, err := os.ReadFile(filepath.Join(fixtureDir, "cache-none", "nar", strings.TrimPrefix(pi.NarInfo.NarHash.String(), "sha256:")+".nar"))
		if err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		if err := c.NarFromPath(ctx, p, &got); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if !bytes.Equal(got.Bytes(), want) {
			t.Errorf("%s: NAR differs from the cache's (%d vs %d bytes)", p, got.Len(), len(want))
		}
	}
}

// TestCoreIsValidPath: the cheap validity check (no metadata, no
// signature checked again) answers exactly as QueryPathInfo, in a signed
// cache and in an unsigned one (where only content-addressed paths are
// valid), for present, untrusted and absent paths.
func TestCoreIsValidPath(t *testing.T) {
	ctx := context.Background()
	for _, cache := range []string{"cache-xz", "cache-unsigned"} {
		c, _ := openCore(t, filepath.Join(fixtureDir, cache), t.TempDir())
		for _, p := range []string{pathApp, pathLib, pathTree, pathLink, pathFile, pathNone} {
			_, want, werr := c.QueryPathInfo(ctx, p)
			got, gerr := c.IsValidPath(ctx, p)
			if got != want || (gerr == nil) != (werr == nil) {
				t.Errorf("%s %s: IsValidPath = %v, %v; QueryPathInfo ok %v, %v", cache, p, got, gerr, want, werr)
			}
		}
	}
}

// TestCoreInfoLooksAhead: a client asking for a path's info is about to
// read it: its listing (here the cache's .ls) is fetched in the
// background, and a lookup in it then asks the cache nothing.
func TestCoreInfoLooksAhead(t *testing.T) {
	c, core := openCore(t, filepath.Join(fixtureDir, "cache-xz"), t.TempDir())
	ctx := context.Background()
	if _, ok, err := c.QueryPathInfo(ctx, pathTree); err != nil || !ok {
		t.Fatalf("QueryPathInfo: %v %v", ok, err)
	}
	for deadline := time.Now().Add(10 * time.Second); core.Stats().ListingGets == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the path's listing was not looked up ahead")
		}
	}
	pi, err := core.Resolve(ctx, strings.TrimPrefix(pathTree, "/nix/store/"))
	if err != nil {
		t.Fatal(err)
	}
	// Requests, not bytes: the lookahead's body may still be arriving.
	requests := func() (n int64) {
		for _, u := range core.Stats().Upstream {
			n += u.Requests
		}
		return n
	}
	before := requests()
	if _, err := core.Lookup(ctx, pi, ""); err != nil {
		t.Fatal(err)
	}
	if after := requests(); after != before {
		t.Errorf("a lookup in the looked-ahead path made %d requests", after-before)
	}
}
