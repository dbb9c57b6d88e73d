package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/remote/chunkindex"
)

// The lies plantLyingLs tells: both keep the NAR's length, so the .ls
// passes every check the signed NarSize allows.
const (
	lieFile      = "share/doc/README" // "narfs integration\n": 18 bytes, told 17
	lieLink      = "lib/libfake.so"   // → libfake.so.1, told libfake.so.2
	truthTarget  = "libfake.so.1"
	lieTarget    = "libfake.so.2"
	truthContent = "narfs integration\n"
)

// plantLyingLs rewrites base's .ls in the cache at dir: README one byte
// shorter (inside its 8-byte padding) and the symlink pointing elsewhere
// (a target of the same length).
func plantLyingLs(t *testing.T, dir, base string) {
	t.Helper()
	lsPath := filepath.Join(dir, hashOf(base)+".ls")
	l, err := nar.DecodeListing(readFile(t, lsPath))
	if err != nil {
		t.Fatal(err)
	}
	f, err := l.Find(lieFile)
	if err != nil {
		t.Fatal(err)
	}
	if f.Size != int64(len(truthContent)) {
		t.Fatalf("%s: %d bytes in the .ls, want %d", lieFile, f.Size, len(truthContent))
	}
	f.Size--
	s, err := l.Find(lieLink)
	if err != nil || s.Target != truthTarget {
		t.Fatalf("%s: %+v, %v", lieLink, s, err)
	}
	s.Target = lieTarget
	var b strings.Builder
	if err := l.Encode(&b); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(lsPath, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

func hasKey(_ string, ok bool) bool { return ok }

// metadataSeen is what stat and readlink show through the mount before
// anything reads a file's contents.
func metadataSeen(t *testing.T, m *mounted, base string) (size, target string) {
	t.Helper()
	target, err := os.Readlink(filepath.Join(m.Dir, base, lieLink))
	if err != nil {
		t.Fatalf("readlink: %v", err)
	}
	out, err := bashC(t, "stat -c %s '"+filepath.Join(m.Dir, base, lieFile)+"'")
	if err != nil {
		t.Fatalf("stat: %v\n%s", err, out)
	}
	return strings.TrimSpace(out), target
}

// TestMountNoDowngradeToLs: on a cache narfs push wrote (it declares
// indexes in nix-cache-info; its narinfos name none), deleting a path's
// index object and planting a lying .ls must not bring the .ls back:
// stat and readlink show the verified NAR's metadata from the first
// answer. The control: a stock cache (nix copy, no index declared) with
// the same lie shows the lie until the NAR is fetched, the documented
// limit, and the truth with --verified-metadata-only.
func TestMountNoDowngradeToLs(t *testing.T) {
	c := nixClosure(t)
	lib := c.iaPaths[2]
	truthSize := itoa(int64(len(truthContent)))
	lieSize := itoa(int64(len(truthContent) - 1))

	t.Run("pushed, index deleted", func(t *testing.T) {
		dir := pushClosure(t, c)
		if info := string(readFile(t, filepath.Join(dir, "nix-cache-info"))); !strings.Contains(info, chunkindex.CacheInfoKey+": 1") {
			t.Fatalf("narfs push did not declare indexes:\n%s", info)
		}
		if ni := readNarinfo(t, filepath.Join(dir, hashOf(lib)+".narinfo")); hasKey(ni.Get(chunkindex.KeyURL)) {
			t.Fatalf("the narinfo names the index: the test would not be about the cache's declaration")
		}
		if err := os.Remove(filepath.Join(dir, chunkindex.AliasKey(hashOf(lib)))); err != nil {
			t.Fatal(err)
		}
		plantLyingLs(t, dir, lib)
		h := serveHTTP(t, dir)
		m := mountNarfs(t, h.URL, nil, "--trusted-public-keys", c.publicKey)
		size, target := metadataSeen(t, m, lib)
		if size != truthSize || target != truthTarget {
			t.Errorf("stat/readlink show size %s, target %q; want the NAR's %s, %q (the .ls says %s, %q)",
				size, target, truthSize, truthTarget, lieSize, lieTarget)
		}
		if n := h.gets(hashOf(lib) + ".ls"); n != 0 {
			t.Errorf("the .ls of a path of an indexed cache was fetched %d times", n)
		}
		if got := string(readFile(t, filepath.Join(m.Dir, lib, lieFile))); got != truthContent {
			t.Errorf("%s = %q", lieFile, got)
		}
	})

	t.Run("stock", func(t *testing.T) {
		dir := copyDir(t, c.caches["zstd"])
		plantLyingLs(t, dir, lib)
		m := mountNarfs(t, "file://"+dir, nil, "--trusted-public-keys", c.publicKey)
		if size, target := metadataSeen(t, m, lib); size != lieSize || target != lieTarget {
			t.Errorf("before the NAR: size %s, target %q; want the .ls's %s, %q (the documented limit)",
				size, target, lieSize, lieTarget)
		}
		m = mountNarfs(t, "file://"+dir, nil, "--trusted-public-keys", c.publicKey, "--verified-metadata-only")
		if size, target := metadataSeen(t, m, lib); size != truthSize || target != truthTarget {
			t.Errorf("--verified-metadata-only: size %s, target %q; want the NAR's %s, %q",
				size, target, truthSize, truthTarget)
		}
	})
}
