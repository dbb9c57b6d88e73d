package remote

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/narfs/narfs/remote/internal/trust"
)

// cacheLayout is the local cache's layout directory (localcache's v4).
const cacheLayout = "v4"

func narKey(p *PathInfo) string { return trust.EntryKey(p.v) }

func TestDiskCacheSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(fixtureDir, "cache-br")
	cfg := trustedConfig(t)
	s := openStore(t, dir, "", cfg)
	p := mustResolve(t, s, pathTreeSmall)
	if _, err := s.materialize(ctx, p); err != nil {
		t.Fatal(err)
	}
	usage := s.Stats().CacheBytes
	s.Close()

	s2 := openStore(t, dir, "", cfg)
	if got := s2.Stats().CacheBytes; got != usage || got != p.NarInfo.NarSize {
		t.Errorf("CacheUsage after restart = %d, want %d", got, usage)
	}
	p2 := mustResolve(t, s2, pathTreeSmall)
	nd := narBytes(t, pathTreeSmall)
	sub, node := firstFile(buildListing(t, nd))
	f, err := s2.openFile(ctx, p2, sub)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(f.Reader())
	f.Close()
	if string(b) != string(nd[node.NarOffset:node.NarOffset+node.Size]) {
		t.Error("OpenFile after restart: wrong contents")
	}
	if st := s2.Stats(); st.NarGets != 0 || st.Fetches != 0 {
		t.Errorf("OpenFile after restart fetched the NAR: %+v", st)
	}
}

func TestDiskCacheSharedByContents(t *testing.T) {
	// The same NAR reached through two caches (or two paths with the same
	// contents) is stored once.
	ctx := context.Background()
	cfg := trustedConfig(t)
	s := openStore(t, filepath.Join(fixtureDir, "cache-gzip"), "", cfg)
	if _, err := s.materialize(ctx, mustResolve(t, s, pathExec)); err != nil {
		t.Fatal(err)
	}
	s2 := openStore(t, filepath.Join(fixtureDir, "cache-bzip2"), "", cfg)
	if _, err := s2.materialize(ctx, mustResolve(t, s2, pathExec)); err != nil {
		t.Fatal(err)
	}
	if st := s2.Stats(); st.NarGets != 0 {
		t.Errorf("the second cache fetched a NAR already held locally: %+v", st)
	}
}

func TestDiskCacheEviction(t *testing.T) {
	ctx := context.Background()
	cfg := trustedConfig(t)
	cfg.CacheSize = 1
	s := openStore(t, filepath.Join(fixtureDir, "cache-zstd"), "", cfg)
	a := mustResolve(t, s, pathTreeSmall)
	b := mustResolve(t, s, pathLib)
	entry := func(p *PathInfo) string { return filepath.Join(cfg.CacheDir, cacheLayout, "nar", narKey(p)) }

	if _, err := s.materialize(ctx, a); err != nil {
		t.Fatal(err)
	}
	if !fileExists(entry(a)) {
		t.Fatal("A is not in the cache after Materialize")
	}
	// A file of A opened before its eviction stays readable.
	nd := narBytes(t, pathTreeSmall)
	sub, node := firstFile(buildListing(t, nd))
	open, err := s.openFile(ctx, a, sub)
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()

	if _, err := s.materialize(ctx, b); err != nil {
		t.Fatal(err)
	}
	if fileExists(entry(a)) {
		t.Error("A is still on disk after B pushed the cache over CacheSize")
	}
	if !fileExists(entry(b)) {
		t.Error("B, the newest entry, was evicted")
	}
	if got := s.Stats().CacheBytes; got != b.NarInfo.NarSize {
		t.Errorf("CacheUsage = %d, want B's NarSize %d", got, b.NarInfo.NarSize)
	}
	if names := dirEntries(t, filepath.Join(cfg.CacheDir, cacheLayout, "tmp")); len(names) != 0 {
		t.Errorf("eviction left %v in tmp", names)
	}
	want := string(nd[node.NarOffset : node.NarOffset+node.Size])
	if got, _ := io.ReadAll(open.Reader()); string(got) != want {
		t.Error("a file opened before eviction no longer reads its contents")
	}

	// A comes back on demand.
	f, err := s.openFile(ctx, a, sub)
	if err != nil {
		t.Fatalf("OpenFile of an evicted path: %v", err)
	}
	got, _ := io.ReadAll(f.Reader())
	f.Close()
	if string(got) != want {
		t.Error("OpenFile of an evicted path: wrong contents")
	}
	if st := s.Stats(); st.NarGets != 3 || st.Fetches != 3 {
		t.Errorf("Stats %+v, want A, B and A again fetched", st)
	}
	if fileExists(entry(b)) {
		t.Error("B is still on disk after A came back")
	}
}

func TestDiskCacheOpenCleansUp(t *testing.T) {
	cacheDir := t.TempDir()
	v1 := filepath.Join(cacheDir, cacheLayout)
	// An interrupted extraction, and an entry without its meta file.
	for _, d := range []string{"tmp/1234.5/root/bin", "nar/0000000000000000000000000000000000000000000000000000/root"} {
		if err := os.MkdirAll(filepath.Join(v1, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	putFile(t, filepath.Join(v1, "tmp/1234.5/root/bin/half-written"), []byte("partial"))
	putFile(t, filepath.Join(v1, "tmp/stray-file"), []byte("x"))

	cfg := trustedConfig(t)
	cfg.CacheDir = cacheDir
	s := openStore(t, filepath.Join(fixtureDir, "cache-none"), "", cfg)
	if names := dirEntries(t, filepath.Join(v1, "tmp")); len(names) != 0 {
		t.Errorf("tmp holds %v after Open, want it emptied", names)
	}
	if names := dirEntries(t, filepath.Join(v1, "nar")); len(names) != 0 {
		t.Errorf("nar holds %v after Open, want the unreadable entry removed", names)
	}
	if u := s.Stats().CacheBytes; u != 0 {
		t.Errorf("CacheUsage = %d", u)
	}
}

func TestDiskCacheEvictsOldestAfterRestart(t *testing.T) {
	// Restart keeps the LRU order (by mtime): the most recently used entry
	// survives the next eviction.
	ctx := context.Background()
	cfg := trustedConfig(t)
	s := openStore(t, filepath.Join(fixtureDir, "cache-none"), "", cfg)
	old := mustResolve(t, s, pathExec)
	recent := mustResolve(t, s, pathFile)
	for _, p := range []*PathInfo{old, recent} {
		if _, err := s.materialize(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	// Make the order unambiguous whatever the file system's mtime
	// resolution.
	past := mtime(t, filepath.Join(cfg.CacheDir, cacheLayout, "nar", narKey(recent))).Add(-time.Hour)
	if err := os.Chtimes(filepath.Join(cfg.CacheDir, cacheLayout, "nar", narKey(old)), past, past); err != nil {
		t.Fatal(err)
	}
	s.Close()

	cfg.CacheSize = old.NarInfo.NarSize + recent.NarInfo.NarSize + 1
	s2 := openStore(t, filepath.Join(fixtureDir, "cache-none"), "", cfg)
	if _, err := s2.materialize(ctx, mustResolve(t, s2, pathLink)); err != nil {
		t.Fatal(err)
	}
	if fileExists(filepath.Join(cfg.CacheDir, cacheLayout, "nar", narKey(old))) {
		t.Error("the least recently used entry survived")
	}
	if !fileExists(filepath.Join(cfg.CacheDir, cacheLayout, "nar", narKey(recent))) {
		t.Error("the most recently used entry was evicted")
	}
}

func mtime(t *testing.T, p string) time.Time {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.ModTime()
}

func TestDiskCacheEntryDeletedUnderUs(t *testing.T) {
	// Someone cleaned the cache dir (or another narfs sharing it evicted
	// the entry): the path is fetched again, not reported missing.
	ctx := context.Background()
	cfg := trustedConfig(t)
	s := openStore(t, filepath.Join(fixtureDir, "cache-xz"), "", cfg)
	p := mustResolve(t, s, pathTreeSmall)
	if _, err := s.materialize(ctx, p); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(cfg.CacheDir, cacheLayout, "nar", narKey(p))); err != nil {
		t.Fatal(err)
	}
	nd := narBytes(t, pathTreeSmall)
	sub, node := firstFile(buildListing(t, nd))
	f, err := s.openFile(ctx, p, sub)
	if err != nil {
		t.Fatalf("OpenFile after the cache entry was deleted: %v", err)
	}
	got, _ := io.ReadAll(f.Reader())
	f.Close()
	if string(got) != string(nd[node.NarOffset:node.NarOffset+node.Size]) {
		t.Error("wrong contents")
	}
	if st := s.Stats(); st.NarGets != 2 || st.Fetches != 2 {
		t.Errorf("Stats %+v, want the NAR fetched again", st)
	}
	if got := s.Stats().CacheBytes; got != p.NarInfo.NarSize {
		t.Errorf("CacheUsage = %d, want %d", got, p.NarInfo.NarSize)
	}
}
