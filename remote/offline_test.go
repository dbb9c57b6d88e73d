package remote

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// A restarted narfs starts while the cache is down and serves every path
// whose NAR it holds, from the narinfo and listing it recorded; a cold
// path fails within the timeout instead of hanging.
func TestOfflineRestart(t *testing.T) {
	srv := httptest.NewServer(http.FileServer(http.Dir(filepath.Join(fixtureDir, "cache-zstd"))))
	cfg := trustedConfig(t)
	cfg.Timeout = 2 * time.Second
	ctx := context.Background()
	s, err := openOne(ctx, srv.URL, cfg)
	if err != nil {
		t.Fatal(err)
	}
	p := mustResolve(t, s, pathTreeSmall)
	nd := narBytes(t, pathTreeSmall)
	sub, node := firstFile(buildListing(t, nd))
	want := string(nd[node.NarOffset : node.NarOffset+node.Size])
	if _, err := s.materialize(ctx, p); err != nil {
		t.Fatal(err)
	}
	s.Close()
	srv.Close() // the cache is gone: connections are refused

	start := time.Now()
	s2, err := openOne(ctx, srv.URL, cfg)
	if err != nil {
		t.Fatalf("Open with the cache down: %v, want a start that serves the local cache", err)
	}
	defer s2.Close()
	p2, err := s2.Resolve(ctx, pathTreeSmall)
	if err != nil {
		t.Fatalf("Resolve offline: %v", err)
	}
	f, err := s2.openFile(ctx, p2, sub)
	if err != nil {
		t.Fatalf("OpenFile offline: %v", err)
	}
	got, _ := io.ReadAll(f.Reader())
	f.Close()
	if string(got) != want {
		t.Errorf("offline read %d bytes, want the file's %d", len(got), len(want))
	}
	if l, err := s2.listing(ctx, p2); err != nil || len(l.Root.Entries) == 0 {
		t.Errorf("Listing offline: %v", err)
	}
	if _, err := s2.Resolve(ctx, pathLib); err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("a cold path offline: %v, want a transient error (not a miss to remember)", err)
	}
	if d := time.Since(start); d > 3*cfg.Timeout {
		t.Errorf("offline start and lookups took %v, timeout %v", d, cfg.Timeout)
	}
}

// The narinfo of a fetched path is recorded and used without asking the
// cache, until NarinfoTTL; merely resolved paths are not recorded.
func TestRecordedNarinfoTTL(t *testing.T) {
	cfg := trustedConfig(t)
	dir := filepath.Join(fixtureDir, "cache-none")
	s := openStore(t, dir, "", cfg)
	if _, err := s.materialize(context.Background(), mustResolve(t, s, pathFile)); err != nil {
		t.Fatal(err)
	}
	mustResolve(t, s, pathExec)
	s2 := openStore(t, dir, "", cfg)
	mustResolve(t, s2, pathExec)
	if got := s2.Stats().NarinfoGets; got != 1 {
		t.Errorf("NarinfoGets = %d for a path only resolved before, want 1", got)
	}
	s2 = openStore(t, dir, "", cfg)
	mustResolve(t, s2, pathFile)
	if got := s2.Stats().NarinfoGets; got != 0 {
		t.Errorf("NarinfoGets = %d with a fresh local record, want 0", got)
	}
	cfg.NarinfoTTL = time.Nanosecond
	s3 := openStore(t, dir, "", cfg)
	mustResolve(t, s3, pathFile)
	if got := s3.Stats().NarinfoGets; got != 1 {
		t.Errorf("NarinfoGets = %d past the TTL, want 1", got)
	}
}

// registerThenOpen resolves base in one process over an HTTP server of
// dir, RecordNarinfos as record (narfs register), and opens a second
// Core on the same cache dir (a mount); gets counts the server's
// requests.
func registerThenOpen(t *testing.T, dir, base string, record bool) (m *Core, gets *atomic.Int64) {
	t.Helper()
	gets = new(atomic.Int64)
	files := http.FileServer(http.Dir(dir))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gets.Add(1)
		files.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	ctx := context.Background()
	cfg := trustedConfig(t)
	cfg.NoReferenceLookahead = true
	reg := cfg
	reg.RecordNarinfos = record
	s, err := openOne(ctx, srv.URL, reg)
	if err != nil {
		t.Fatal(err)
	}
	mustResolve(t, s, base)
	s.Close()
	if m, err = openOne(ctx, srv.URL, cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m, gets
}

// With RecordNarinfos (narfs register), every narinfo resolved is
// recorded in the cache dir, not only those of paths whose data was
// fetched: another process sharing the cache dir (a mount) then resolves
// them without asking the cache. Without it, nothing is recorded.
func TestRecordNarinfos(t *testing.T) {
	for _, record := range []bool{true, false} {
		m, gets := registerThenOpen(t, filepath.Join(fixtureDir, "cache-zstd"), pathApp, record)
		before := gets.Load()
		mustResolve(t, m, pathApp)
		asked := gets.Load() - before
		if record && asked != 0 {
			t.Errorf("recorded: resolving in another process asked the cache %d times", asked)
		}
		if !record && asked == 0 {
			t.Error("not recorded: resolving in another process asked nothing")
		}
	}
}

// With RecordNarinfos, an indexed path's chunk index is recorded with its
// narinfo: another process then resolves the path and lists it without
// asking the cache.
func TestRecordNarinfosIndexed(t *testing.T) {
	c := makeIndexedCache(t, pathTree, "zstd")
	m, gets := registerThenOpen(t, c.dir, pathTree, true)
	before := gets.Load()
	p := mustResolve(t, m, pathTree)
	if _, err := m.Lookup(context.Background(), p, ""); err != nil {
		t.Fatal(err)
	}
	if asked := gets.Load() - before; asked != 0 {
		t.Errorf("resolving and listing a registered indexed path asked the cache %d times", asked)
	}
	if x := m.Stats(); x.IndexGets != 0 {
		t.Errorf("the index was fetched again: %+v", x)
	}
}
