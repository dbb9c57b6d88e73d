package integration

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestMountVerifiedMetadataOnly: the cache's .ls files are never asked for;
// metadata comes from verified NARs and still matches Nix's extraction.
func TestMountVerifiedMetadataOnly(t *testing.T) {
	c := nixClosure(t)
	h := serveHTTP(t, c.caches["zstd"])
	m := mountNarfs(t, h.URL, nil, "--trusted-public-keys", c.publicKey, "--verified-metadata-only")
	ref := nixExtract(t, "file://"+c.caches["zstd"], c.publicKey, []string{c.app})
	compareTrees(t, filepath.Join(ref, c.app), filepath.Join(m.Dir, c.app))
	h.mu.Lock()
	defer h.mu.Unlock()
	for key, n := range h.get {
		if filepath.Ext(key) == ".ls" {
			t.Errorf("%s was fetched %d times", key, n)
		}
	}
}

// TestMountPrefetchReferences: reading one file of the closure root makes
// the daemon fetch the rest of the closure in the background.
func TestMountPrefetchReferences(t *testing.T) {
	c := nixClosure(t)
	h := serveHTTP(t, c.caches["zstd"])
	m := mountNarfs(t, h.URL, nil, "--trusted-public-keys", c.publicKey, "--prefetch-references")
	if _, err := os.ReadFile(filepath.Join(m.Dir, c.root, "deps")); err != nil {
		t.Fatal(err)
	}
	// The root references every other path of the closure.
	want := len(c.all)
	for deadline := time.Now().Add(60 * time.Second); h.narGets() < want && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	if got := h.narGets(); got != want {
		t.Errorf("%d NARs fetched after reading the root, want the whole closure (%d)", got, want)
	}
}
