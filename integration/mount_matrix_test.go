package integration

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// backendKinds are the three ways a cache is reached.
var backendKinds = []string{"file", "http", "s3"}

// serveCache makes dir reachable through kind and returns the store URL and
// the environment narfs needs for it.
func serveCache(t *testing.T, kind, dir string) (string, []string) {
	t.Helper()
	switch kind {
	case "file":
		return "file://" + dir, nil
	case "http":
		return serveHTTP(t, dir).URL, nil
	case "s3":
		s := startS3(t)
		return s.bucket(t, "cache", dir), s.env()
	}
	t.Fatalf("unknown backend %s", kind)
	return "", nil
}

// TestMountMatchesNix mounts every cache through every backend and compares
// each store path with what real Nix extracts from the same cache.
func TestMountMatchesNix(t *testing.T) {
	c := nixClosure(t)
	for _, comp := range compressions {
		paths := c.all
		if comp == "br" {
			paths = c.tinyPaths
		}
		var ref string
		t.Run(comp, func(t *testing.T) {
			ref = nixExtract(t, "file://"+c.caches[comp], c.publicKey, paths)
			for _, kind := range backendKinds {
				t.Run(kind, func(t *testing.T) {
					url, env := serveCache(t, kind, c.caches[comp])
					m := mountNarfs(t, url, env, "--trusted-public-keys", c.publicKey)
					for _, p := range paths {
						compareTrees(t, filepath.Join(ref, p), filepath.Join(m.Dir, p))
					}
					checkRootListing(t, kind, m.Dir, paths)
					if comp != "br" {
						out, err := bashC(t, filepath.Join(m.Dir, c.app, "bin", "app"))
						if err != nil || !strings.HasPrefix(out, "app-ok\n") {
							t.Errorf("running %s/bin/app from the mount: %v\n%s", c.app, err, out)
						}
					}
				})
			}
		})
	}
}

// checkRootListing: a listable cache shows all its paths; HTTP shows the
// ones looked up so far (all of them, after the comparison).
func checkRootListing(t *testing.T, kind, dir string, want []string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("readdir of the mount root: %v", err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	w := append([]string{}, want...)
	sort.Strings(w)
	if strings.Join(got, " ") != strings.Join(w, " ") {
		t.Errorf("%s: root lists %v, want %v", kind, got, w)
	}
}
