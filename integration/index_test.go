package integration

import (
	"crypto/sha256"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/narfs/narfs/remote/narinfo"
)

// copyCache copies a fixture cache, so that a test may change it.
func copyCache(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "cache")
	if out, err := bashC(t, fmt.Sprintf("cp -a '%s' '%s'", src, dst)); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
	return dst
}

// cacheState is every file of a cache with its contents' hash.
func cacheState(t *testing.T, dir string) map[string][32]byte {
	t.Helper()
	m := map[string][32]byte{}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			rel, _ := filepath.Rel(dir, p)
			m[rel] = sha256.Sum256(readFile(t, p))
		}
		return err
	})
	return m
}

// TestIndexUpgrade: narfs index turns a cache nix copy wrote (xz) into an
// indexed one in place; Nix still copies every path back byte for byte,
// each narinfo keeps Nix's own signature, narfs verify passes, and a rerun
// changes nothing.
func TestIndexUpgrade(t *testing.T) {
	c := nixClosure(t)
	dir := copyCache(t, c.caches["xz"])
	before := map[string]*narinfo.NarInfo{}
	for _, p := range c.all {
		before[p] = readNarinfo(t, filepath.Join(dir, hashOf(p)+".narinfo"))
	}
	out, errOut, code := narfs(t, nil, "index", "--secret-key", c.secretKey, "file://"+dir, "--all")
	if code != 0 || strings.Count(out, "indexed ") != len(c.all) || !strings.Contains(out, "re-encoded nar/") {
		t.Fatalf("narfs index: exit %d\n%s%s", code, out, errOut)
	}
	pub, err := narinfo.ParsePublicKey(c.publicKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range c.all {
		ni := readNarinfo(t, filepath.Join(dir, hashOf(p)+".narinfo"))
		old := before[p]
		if ni.Compression != "zstd" || ni.URL == old.URL || !slices.Equal(ni.Sigs, old.Sigs) || ni.NarHash.String() != old.NarHash.String() {
			t.Errorf("%s: narinfo after index: URL %s, Compression %s, Sigs %v (before %s, %v)", p, ni.URL, ni.Compression, ni.Sigs, old.URL, old.Sigs)
		}
		if _, err := ni.Verify([]narinfo.PublicKey{pub}); err != nil {
			t.Errorf("%s: Nix's signature no longer verifies: %v", p, err)
		}
		if len(ni.Extra) != 0 {
			t.Errorf("%s: narinfo has lines Nix does not write: %v", p, ni.Extra)
		}
		if _, err := os.Stat(filepath.Join(dir, old.URL)); err != nil {
			t.Errorf("%s: the old object is gone without --prune: %v", p, err)
		}
	}
	sameAsStore(t, nixExtract(t, "file://"+dir, c.publicKey, c.all), c.all)
	out, errOut, code = narfs(t, nil, "verify", "--trusted-public-keys="+c.publicKey, "file://"+dir, "--all")
	if code != 0 || strings.Count(out, "ok ") != len(c.all) {
		t.Errorf("verify after index: exit %d\n%s%s", code, out, errOut)
	}

	state := cacheState(t, dir)
	out, errOut, code = narfs(t, nil, "index", "--secret-key", c.secretKey, "file://"+dir, "--all")
	if code != 0 || strings.Count(out, "skipped ") != len(c.all) {
		t.Errorf("index rerun: exit %d, want every path skipped\n%s%s", code, out, errOut)
	}
	if !maps.Equal(state, cacheState(t, dir)) {
		t.Error("index rerun changed the cache")
	}

	// --prune, on paths named one by one, deletes the replaced objects.
	pruned := copyCache(t, c.caches["bzip2"])
	args := []string{"index", "--secret-key", c.secretKey, "--prune", "file://" + pruned}
	for _, p := range c.all {
		args = append(args, "/nix/store/"+p)
	}
	if out, errOut, code := narfs(t, nil, args...); code != 0 {
		t.Fatalf("narfs index --prune: exit %d\n%s%s", code, out, errOut)
	}
	left, _ := filepath.Glob(filepath.Join(pruned, "nar", "*.bz2"))
	if len(left) != 0 {
		t.Errorf("--prune left %v", left)
	}
	sameAsStore(t, nixExtract(t, "file://"+pruned, c.publicKey, c.all), c.all)
}
