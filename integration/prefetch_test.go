package integration

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// prefetch runs `narfs prefetch --closure` of the fixture root into
// cacheDir and checks it fetched every path of the closure.
func prefetch(t *testing.T, c *closure, url, cacheDir string, extra ...string) {
	t.Helper()
	args := append([]string{"prefetch", "--closure", "--trusted-public-keys", c.publicKey, "--cache-dir", cacheDir}, extra...)
	start := time.Now()
	out, errOut, code := narfs(t, nil, append(args, url, "/nix/store/"+c.root)...)
	t.Logf("narfs prefetch --closure %s: %v", strings.Join(extra, " "), time.Since(start))
	if code != 0 {
		t.Fatalf("narfs prefetch: exit %d\n%s%s", code, out, errOut)
	}
	for _, p := range c.all {
		if !strings.Contains(out, "fetched /nix/store/"+p+" (") {
			t.Errorf("narfs prefetch did not fetch %s:\n%s", p, out)
		}
	}
	if n := strings.Count(out, "\n"); n != len(c.all) {
		t.Errorf("narfs prefetch printed %d lines, want %d:\n%s", n, len(c.all), out)
	}
}

// readsWithoutNARs mounts url with cacheDir, reads every file of the
// closure (compared with /nix/store) and checks that no NAR byte was
// requested.
func readsWithoutNARs(t *testing.T, c *closure, h *httpCache, cacheDir string) {
	t.Helper()
	before := h.narGets()
	m := mountNarfs(t, h.URL, nil, "--trusted-public-keys", c.publicKey, "--cache-dir", cacheDir)
	start := time.Now()
	sameAsStore(t, m.Dir, c.all)
	t.Logf("diff -r of the mounted closure: %v", time.Since(start))
	if n := h.narGets() - before; n != 0 {
		t.Errorf("reading the prefetched closure through a mount made %d NAR requests", n)
	}
}

// TestPrefetchClosure: after `narfs prefetch --closure`, a mount with the
// same --cache-dir reads the whole closure with no NAR request, for a
// cache written by nix copy (whole NARs) and one written by narfs push
// (indexed: every chunk is fetched); a second prefetch fetches nothing.
func TestPrefetchClosure(t *testing.T) {
	c := nixClosure(t)
	for name, dir := range map[string]string{"nix copy": c.caches["zstd"], "narfs push": pushClosure(t, c)} {
		t.Run(name, func(t *testing.T) {
			h := serveHTTP(t, dir)
			cacheDir := t.TempDir()
			prefetch(t, c, h.URL, cacheDir, "--jobs", "3")
			if n := h.narGets(); n < len(c.all) {
				t.Errorf("prefetch made %d NAR requests for %d paths", n, len(c.all))
			}
			before := h.narGets()
			prefetch(t, c, h.URL, cacheDir)
			if n := h.narGets() - before; n != 0 {
				t.Errorf("a second prefetch made %d NAR requests", n)
			}
			readsWithoutNARs(t, c, h, cacheDir)
		})
	}
}

// TestPrefetchWhileMounted: prefetch into the cache dir of a running
// mount; the mount then serves the closure without asking for a NAR, and
// the path it had already read is not fetched again by the prefetch.
func TestPrefetchWhileMounted(t *testing.T) {
	c := nixClosure(t)
	h := serveHTTP(t, c.caches["xz"])
	cacheDir := t.TempDir()
	m := mountNarfs(t, h.URL, nil, "--trusted-public-keys", c.publicKey, "--cache-dir", cacheDir)
	readFile(t, filepath.Join(m.Dir, c.app, "bin", "app"))
	if n := h.narGets(); n != 1 {
		t.Fatalf("reading one file made %d NAR requests", n)
	}
	prefetch(t, c, h.URL, cacheDir)
	if n := h.narGets(); n != len(c.all) {
		t.Errorf("%d NAR requests after the prefetch, want one per path (%d)", n, len(c.all))
	}
	before := h.narGets()
	sameAsStore(t, m.Dir, c.all)
	if n := h.narGets() - before; n != 0 {
		t.Errorf("the mount made %d NAR requests for prefetched paths", n)
	}
}

// TestPrefetchErrors: a missing path fails (exit 1) without stopping the
// others; a bad argument is a usage error (exit 2).
func TestPrefetchErrors(t *testing.T) {
	c := nixClosure(t)
	key := "--trusted-public-keys=" + c.publicKey
	cd := "--cache-dir=" + t.TempDir()
	cache := "file://" + c.caches["zstd"]
	missing := "00000000000000000000000000000000-missing"
	out, errOut, code := narfs(t, nil, "prefetch", key, cd, cache, missing, hashOf(c.app))
	if code != 1 {
		t.Errorf("prefetch of a missing path: exit %d, want 1\n%s%s", code, out, errOut)
	}
	if !strings.Contains(out, "failed "+missing+": ") || !strings.Contains(out, "fetched /nix/store/"+c.app+" (") {
		t.Errorf("prefetch output, want the missing path failed and the app fetched:\n%s", out)
	}
	for _, args := range [][]string{
		{"prefetch", key, cd, cache},
		{"prefetch", key, cd, cache, "not-a-path!"},
		{"prefetch", "--jobs=0", key, cd, cache, c.app},
		{"prefetch", "--no-such-flag", cache, c.app},
	} {
		if _, errOut, code := narfs(t, nil, args...); code != 2 {
			t.Errorf("narfs %s: exit %d, want 2\n%s", strings.Join(args, " "), code, errOut)
		}
	}
}
