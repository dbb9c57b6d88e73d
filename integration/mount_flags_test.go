package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
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

// TestMountNoOpen: with --no-open the kernel asks narfs nothing when a
// file is opened or closed: a cold walk reads every byte right (fetched
// and verified at the first read), a program runs from the mount, and a
// warm walk costs no OPEN, RELEASE or FLUSH (the kernel sends none in
// this mode) and almost no READ.
func TestMountNoOpen(t *testing.T) {
	c := nixClosure(t)
	h := serveHTTP(t, c.caches["zstd"])
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	m := mountNarfs(t, h.URL, nil, "--trusted-public-keys", c.publicKey, "--metrics-listen", addr, "--no-open")
	ref := nixExtract(t, "file://"+c.caches["zstd"], c.publicKey, []string{c.root})
	for _, p := range c.all {
		compareTrees(t, filepath.Join(ref, p), filepath.Join(m.Dir, p))
	}
	out, err := bashC(t, filepath.Join(m.Dir, c.app, "bin/app"))
	if err != nil || !strings.HasPrefix(out, "app-ok\n") {
		t.Fatalf("running from the mount: %q, %v", out, err)
	}
	// An operation is counted after its reply is sent: the reader can
	// be done before the last count lands, so scrape until two agree.
	scrape := func() (open, read, release, flush float64) {
		s, _ := scrapeMetrics(t, addr)
		n := func(op string) float64 {
			return sum(s, "narfs_fuse_operation_duration_seconds_count", `op="`+op+`"`)
		}
		return n("open"), n("read"), n("release"), n("flush")
	}
	ops := func() (open, read, release, flush float64) {
		open, read, release, flush = scrape()
		for range 40 {
			time.Sleep(50 * time.Millisecond)
			o, r, rl, f := scrape()
			if o == open && r == read && rl == release && f == flush {
				break
			}
			open, read, release, flush = o, r, rl, f
		}
		return open, read, release, flush
	}
	// "open" and "release" count narfs's shared handles here: opened at a
	// file's first read, closed after sharedIdle without reads (which a
	// slow run reaches between the walks).
	open, read, release, flush := ops()
	if flush != 0 || open == 0 || read == 0 || release > open {
		t.Errorf("cold walk: %v opens of shared handles, %v reads, %v releases, %v flushes", open, read, release, flush)
	}
	// The kernel keeps the page cache, but may still drop a page now and
	// then (seen here: a few pages of 3000 files read again, with no
	// invalidation from narfs and nothing else under memory pressure):
	// the warm walk may read a handful, each perhaps reopening a handle
	// closed as idle; a mode that kept nothing would read them all again.
	// A walk during which anyone dropped the caches (drop_caches: make
	// bench does) is redone.
	var open2, read2, flush2 float64
	for range 3 {
		drops := cacheDrops(t)
		for _, p := range c.all {
			compareTrees(t, filepath.Join(ref, p), filepath.Join(m.Dir, p))
		}
		open2, read2, _, flush2 = ops()
		if cacheDrops(t) == drops {
			break
		}
		open, read = open2, read2
	}
	if extra := read2 - read; extra > read/100 || open2-open > extra || flush2 != 0 {
		t.Errorf("warm walk asked narfs: opens %v→%v, reads %v→%v, flushes %v", open, open2, read, read2, flush2)
	}
}
