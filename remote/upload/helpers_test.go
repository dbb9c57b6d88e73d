package upload

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/narfs/narfs/remote/backend"
	"github.com/narfs/narfs/remote/narinfo"
)

// nixConfig keeps real Nix away from the host's configuration and daemon.
const nixConfig = "experimental-features = nix-command\nbuild-users-group =\nsandbox = false\nsubstituters =\n"

func requireNix(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("nix-store"); err != nil {
		t.Skip("real Nix is not installed")
	}
	if os.Geteuid() != 0 {
		t.Skip("adding to /nix/store needs root")
	}
	os.Setenv("NIX_CONFIG", nixConfig)
}

func run(t testing.TB, dir, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, errb.String())
	}
	return strings.TrimSpace(out.String())
}

// fixture is a closure in the local store: a content-addressed tree and
// an input-addressed path that references it.
type fixture struct {
	tree, ref string // absolute store paths
	key       narinfo.SecretKey
	publicKey string
}

var (
	fixtureOnce sync.Once
	shared      *fixture
)

// nixFixture makes the store paths once per test binary (their contents
// are random, so every run pushes paths no cache has seen).
func nixFixture(t testing.TB) *fixture {
	t.Helper()
	requireNix(t)
	fixtureOnce.Do(func() { shared = makeFixture(t) })
	if shared == nil {
		t.Fatal("fixture failed")
	}
	return shared
}

func makeFixture(t testing.TB) *fixture {
	dir, err := os.MkdirTemp("", "narfs-upload-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	tree := filepath.Join(dir, "tree")
	for _, d := range []string{"bin", "share/doc", "empty"} {
		os.MkdirAll(filepath.Join(tree, d), 0o755)
	}
	big := make([]byte, 3<<20+12345) // several chunks
	rand.Read(big[:1<<20])
	write := func(p string, b []byte, mode os.FileMode) {
		if err := os.WriteFile(filepath.Join(tree, p), b, mode); err != nil {
			t.Fatal(err)
		}
	}
	write("big", big, 0o644)
	write("solo", bytes.Repeat([]byte("solo file "), 20000), 0o644)
	write("bin/tool", []byte("#!/bin/sh\necho tool\n"), 0o755)
	write("share/doc/README", []byte("narfs upload test\n"), 0o644)
	write("share/doc/zero", nil, 0o644)
	for i := range 50 {
		write(fmt.Sprintf("share/f%02d", i), []byte(strings.Repeat("x", i*37)), 0o644)
	}
	if err := os.Symlink("share/doc/README", filepath.Join(tree, "readme")); err != nil {
		t.Fatal(err)
	}
	f := &fixture{}
	f.tree = run(t, dir, "nix-store", "--add", tree)
	expr := fmt.Sprintf(`derivation { name = "narfs-upload-ref"; system = builtins.currentSystem; builder = "/bin/sh";
	  tree = builtins.storePath %q; nonce = "%x";
	  args = [ "-c" "echo $tree $nonce > $out" ]; }`, f.tree, big[:8])
	f.ref = run(t, dir, "nix-build", "--no-out-link", "-E", expr)
	run(t, dir, "nix-store", "--generate-binary-cache-key", "narfs-upload-1", "sk", "pk")
	sk, _ := os.ReadFile(filepath.Join(dir, "sk"))
	pk, _ := os.ReadFile(filepath.Join(dir, "pk"))
	if f.key, err = narinfo.ParseSecretKey(string(sk)); err != nil {
		t.Fatal(err)
	}
	f.publicKey = strings.TrimSpace(string(pk))
	return f
}

// emptyCache opens a new file:// cache.
func emptyCache(t testing.TB) (*Cache, string) {
	t.Helper()
	dir := t.TempDir()
	c, err := Open(context.Background(), "file://"+dir, backend.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, dir
}

// nixCopyFrom extracts paths from a cache with real Nix into a fresh
// chroot store, trusting key, and returns that store's directory.
func nixCopyFrom(t testing.TB, cacheURL, key string, paths ...string) string {
	t.Helper()
	root := t.TempDir()
	args := []string{"copy", "--from", cacheURL, "--to", "local?root=" + root, "--option", "trusted-public-keys", key}
	run(t, root, "nix", append(args, paths...)...)
	return filepath.Join(root, "nix", "store")
}

// sameTree checks a store path Nix extracted against the original.
func sameTree(t testing.TB, storeDir, path string) {
	t.Helper()
	got := filepath.Join(storeDir, filepath.Base(path))
	cmd := exec.Command("diff", "-r", "--no-dereference", path, got)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("diff -r %s %s: %v\n%s", path, got, err, out)
	}
}

func query(t testing.TB, closure bool, paths ...string) []PathInfo {
	t.Helper()
	ps, err := QueryPathInfo(context.Background(), paths, closure)
	if err != nil {
		t.Fatal(err)
	}
	return ps
}
