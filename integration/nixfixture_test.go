package integration

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// closure is a set of real store paths and binary caches made by Nix.
type closure struct {
	dir       string
	publicKey string // name:base64 of the signing key
	otherKey  string // a key that signed nothing
	secretKey string // path of the signing key file
	root      string // base name of the closure root (references everything)
	app       string // base name of an executable-bearing path
	caPaths   []string
	iaPaths   []string
	all       []string          // every base name in the closure
	tinyPaths []string          // paths small enough for br
	caches    map[string]string // cache name → directory
}

var (
	fixtureOnce sync.Once
	fixture     *closure
	fixtureErr  error
	fixtureDir  string
)

// caches made for every test run: name → nix copy parameters.
var cacheParams = map[string]string{
	"xz":    "compression=xz&parallel-compression=true",
	"zstd":  "compression=zstd",
	"bzip2": "compression=bzip2",
	"none":  "compression=none",
	"br":    "compression=br",
}

// compressions the matrix runs, in order.
var compressions = []string{"xz", "zstd", "bzip2", "none", "br"}

func cleanupFixtures() {
	if fixtureDir != "" {
		os.RemoveAll(fixtureDir)
	}
}

// nixClosure builds (once per test binary) the store paths and caches.
func nixClosure(t testing.TB) *closure {
	t.Helper()
	requireE2E(t)
	fixtureOnce.Do(func() {
		fixture, fixtureErr = buildClosure()
	})
	if fixtureErr != nil {
		t.Fatalf("building Nix fixtures: %v", fixtureErr)
	}
	return fixture
}

func sh(dir string, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, errb.String())
	}
	return strings.TrimSpace(out.String()), nil
}

func buildClosure() (*closure, error) {
	dir, err := os.MkdirTemp("", "narfs-nix-")
	if err != nil {
		return nil, err
	}
	fixtureDir = dir
	c := &closure{dir: dir, caches: map[string]string{}}

	// Edge-case trees (every node type, odd names, a >10 MB file), added
	// as content-addressed paths.
	mktree, _ := filepath.Abs("../nar/testdata/mktree.sh")
	if _, err := sh(dir, "bash", mktree, filepath.Join(dir, "trees")); err != nil {
		return nil, err
	}
	if err := makeOddTree(filepath.Join(dir, "trees", "odd-deep-wide")); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(filepath.Join(dir, "trees"))
	if err != nil {
		return nil, err
	}
	var caAbs []string
	for _, e := range ents {
		p, err := sh(dir, "nix-store", "--add", filepath.Join(dir, "trees", e.Name()))
		if err != nil {
			return nil, err
		}
		caAbs = append(caAbs, p)
		c.caPaths = append(c.caPaths, filepath.Base(p))
		if e.Name() != "tree" && e.Name() != "odd-deep-wide" {
			c.tinyPaths = append(c.tinyPaths, filepath.Base(p))
		}
	}

	// Input-addressed paths with references, built by real derivations.
	var refs strings.Builder
	for _, p := range caAbs {
		fmt.Fprintf(&refs, " %q", p)
	}
	expr := fmt.Sprintf(closureNix, refs.String())
	if err := os.WriteFile(filepath.Join(dir, "closure.nix"), []byte(expr), 0o644); err != nil {
		return nil, err
	}
	out, err := sh(dir, "nix-build", "--no-out-link", "closure.nix", "-A", "root", "-A", "app", "-A", "lib")
	if err != nil {
		return nil, err
	}
	built := strings.Fields(out)
	if len(built) != 3 {
		return nil, fmt.Errorf("nix-build printed %q", out)
	}
	c.root, c.app = filepath.Base(built[0]), filepath.Base(built[1])
	c.iaPaths = []string{c.root, c.app, filepath.Base(built[2])}
	c.all = append(append([]string{}, c.iaPaths...), c.caPaths...)

	// Keys: one that signs, one that signs nothing.
	if _, err := sh(dir, "nix-store", "--generate-binary-cache-key", "narfs-it-1", "sk", "pk"); err != nil {
		return nil, err
	}
	if _, err := sh(dir, "nix-store", "--generate-binary-cache-key", "narfs-it-other", "sk2", "pk2"); err != nil {
		return nil, err
	}
	pk, _ := os.ReadFile(filepath.Join(dir, "pk"))
	pk2, _ := os.ReadFile(filepath.Join(dir, "pk2"))
	c.publicKey, c.otherKey = strings.TrimSpace(string(pk)), strings.TrimSpace(string(pk2))
	c.secretKey = filepath.Join(dir, "sk")

	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for name, params := range cacheParams {
		paths := []string{"/nix/store/" + c.root}
		if name == "br" {
			// brotli compression is slow: keep this one tiny.
			paths = nil
			for _, p := range c.tinyPaths {
				paths = append(paths, "/nix/store/"+p)
			}
		}
		cacheDir := filepath.Join(dir, "cache-"+name)
		c.caches[name] = cacheDir
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := nixCopyTo(dir, fmt.Sprintf("file://%s?%s&write-nar-listing=true&secret-key=%s", cacheDir, params, c.secretKey), paths...)
			mu.Lock()
			if err != nil && firstErr == nil {
				firstErr = err
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	// Unsigned: content-addressed paths must stand on their own.
	unsigned := filepath.Join(dir, "cache-unsigned")
	c.caches["unsigned"] = unsigned
	if err := nixCopyTo(dir, "file://"+unsigned+"?compression=zstd&write-nar-listing=true", "/nix/store/"+c.root); err != nil {
		return nil, err
	}
	return c, nil
}

func nixCopyTo(dir, to string, paths ...string) error {
	_, err := sh(dir, "nix", append([]string{"copy", "--to", to}, paths...)...)
	return err
}

// closureNix: lib (a library-ish tree), app (an executable that reads lib),
// root (references app, lib and every tree).
const closureNix = `
let
  sys = builtins.currentSystem;
  trees = map builtins.storePath [ %s ];
  lib = derivation {
    name = "narfs-it-lib"; system = sys; builder = "/bin/sh"; PATH = "/bin:/usr/bin";
    args = [ "-c" "mkdir -p $out/lib $out/share/doc; head -c 300000 /bin/sh > $out/lib/libfake.so.1; ln -s libfake.so.1 $out/lib/libfake.so; echo 'narfs integration' > $out/share/doc/README; touch $out/share/empty" ];
  };
  app = derivation {
    name = "narfs-it-app"; system = sys; builder = "/bin/sh"; PATH = "/bin:/usr/bin";
    args = [ "-c" "mkdir -p $out/bin; printf '#!/bin/sh\\necho app-ok; echo lib=${lib}\\n' > $out/bin/app; chmod +x $out/bin/app" ];
  };
  root = derivation {
    name = "narfs-it-root"; system = sys; builder = "/bin/sh"; PATH = "/bin:/usr/bin";
    deps = [ app lib ] ++ trees;
    args = [ "-c" "mkdir $out; for d in $deps; do echo $d; done > $out/deps" ];
  };
in { inherit lib app root; }
`

// nixExtract is what real Nix thinks the cache holds: `nix copy --from`
// into a chroot store, returning the chroot's store directory.
func nixExtract(t testing.TB, cacheURL, key string, paths []string) string {
	t.Helper()
	root := t.TempDir()
	args := []string{"copy", "--from", cacheURL, "--to", "local?root=" + root}
	if key != "" {
		args = append(args, "--option", "trusted-public-keys", key)
	}
	for _, p := range paths {
		args = append(args, "/nix/store/"+p)
	}
	if _, err := sh(root, "nix", args...); err != nil {
		t.Fatalf("reference extraction: %v", err)
	}
	return filepath.Join(root, "nix", "store")
}

// makeOddTree adds what mktree.sh does not: a 200-level-deep directory
// chain (Nix 2.8 writes such NARs), a directory of 3000 entries, and names
// with newlines, tabs, backslashes, quotes and bytes that are not UTF-8.
func makeOddTree(root string) error {
	deep := root
	for i := range 200 {
		deep = filepath.Join(deep, fmt.Sprintf("d%d", i%10))
	}
	if err := os.MkdirAll(deep, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(deep, "bottom"), []byte("deep\n"), 0o644); err != nil {
		return err
	}
	wide := filepath.Join(root, "wide")
	if err := os.MkdirAll(wide, 0o755); err != nil {
		return err
	}
	for i := range 3000 {
		if err := os.WriteFile(filepath.Join(wide, fmt.Sprintf("f%04d", i)), []byte(fmt.Sprint(i)), 0o644); err != nil {
			return err
		}
	}
	for _, name := range []string{"new\nline", "tab\there", `back\slash`, `"quoted"`, "\xff\xfe-not-utf8", "\x01ctrl", "*?[glob]", "trailing."} {
		if err := os.WriteFile(filepath.Join(root, name), []byte(name), 0o644); err != nil {
			return err
		}
	}
	return nil
}
