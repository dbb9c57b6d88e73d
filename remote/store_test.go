package remote

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

func TestPaths(t *testing.T) {
	ctx := context.Background()
	all := fixturePaths(t)
	var allNames, caNames []string
	for _, fp := range all {
		allNames = append(allNames, fp.base)
		if fp.ca {
			caNames = append(caNames, fp.base)
		}
	}
	dir := copyCache(t, "cache-none")
	// Things a cache directory holds besides narinfos, and a narinfo of a
	// path nobody trusts.
	putFile(t, filepath.Join(dir, "not-a-hash.narinfo"), []byte("junk"))
	putFile(t, filepath.Join(dir, hashPart(pathLib)+".narinfo.tmp.123.4"), []byte("junk"))
	forged := readNarinfo(t, filepath.Join(fixtureDir, "cache-unsigned"), hashPart(pathLib))
	forged.StorePath.Hash = "00000000000000000000000000000000"
	writeNarinfo(t, dir, forged)

	for name, tc := range map[string]struct {
		cfg  Config
		want []string
	}{
		"trusted key": {trustedConfig(t), allNames},
		"no keys":     {Config{RequireSigs: true}, caNames},
	} {
		t.Run(name, func(t *testing.T) {
			s := openStore(t, dir, "", tc.cfg)
			var (
				mu  sync.Mutex
				got []string
			)
			err := s.Paths(ctx, func(p *PathInfo) {
				mu.Lock()
				got = append(got, p.Path.String())
				mu.Unlock()
			})
			if err != nil {
				t.Fatal(err)
			}
			slices.Sort(got)
			want := slices.Sorted(slices.Values(tc.want))
			if !slices.Equal(got, want) {
				t.Errorf("Paths:\n got %v\nwant %v", got, want)
			}
		})
	}
}

func TestPathsCancelled(t *testing.T) {
	s := openStore(t, filepath.Join(fixtureDir, "cache-none"), "", trustedConfig(t))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	n := 0
	err := s.Paths(ctx, func(*PathInfo) { n++ })
	if err == nil && n == len(fixturePaths(t)) {
		t.Error("Paths ran to completion on a cancelled context")
	}
}

func TestOpenForeignStoreDir(t *testing.T) {
	dir := copyCache(t, "cache-none")
	putFile(t, filepath.Join(dir, "nix-cache-info"), []byte("StoreDir: /other/store\nWantMassQuery: 1\n"))
	_, err := openOne(context.Background(), "file://"+dir, Config{CacheDir: t.TempDir(), Logger: quietLogger()})
	if err == nil {
		t.Fatal("Open of a cache for /other/store succeeded")
	}
	if msg := err.Error(); !strings.Contains(msg, "/other/store") || !strings.Contains(msg, "/nix/store") {
		t.Errorf("error %q does not name both store dirs", msg)
	}
}

func TestOpenWithoutCacheInfo(t *testing.T) {
	dir := copyCache(t, "cache-none")
	removeFile(t, filepath.Join(dir, "nix-cache-info"))
	s := openStore(t, dir, "", trustedConfig(t))
	if _, err := s.materialize(context.Background(), mustResolve(t, s, pathFile)); err != nil {
		t.Fatal(err)
	}
}

func TestOpenMalformedCacheInfo(t *testing.T) {
	dir := copyCache(t, "cache-none")
	putFile(t, filepath.Join(dir, "nix-cache-info"), []byte("StoreDir: /nix/store\nPriority: high\n"))
	_, err := openOne(context.Background(), "file://"+dir, Config{CacheDir: t.TempDir(), Logger: quietLogger()})
	if err == nil || !strings.Contains(err.Error(), "nix-cache-info") {
		t.Errorf("Open with a malformed nix-cache-info = %v, want an error naming it", err)
	}
}

func TestOpenBadURL(t *testing.T) {
	abs, err := filepath.Abs(fixtureDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{
		"file://relative/dir",
		"gopher://example.org",
		"file:///nonexistent/narfs-test-cache",
		"file://" + filepath.Join(abs, "cache-none") + "?no-such-param=1",
	} {
		s, err := openOne(context.Background(), u, Config{CacheDir: t.TempDir(), Logger: quietLogger()})
		if err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded", u)
		}
	}
}

func TestNarinfoOfNonStoreDir(t *testing.T) {
	// A narinfo for another store dir is not this cache's path, even if
	// nix-cache-info is silent.
	dir := copyCache(t, "cache-none")
	removeFile(t, filepath.Join(dir, "nix-cache-info"))
	ni := readNarinfo(t, dir, hashPart(pathLib))
	ni.StoreDir = "/other/store"
	resign(t, ni)
	writeNarinfo(t, dir, ni)
	s := openStore(t, dir, "", trustedConfig(t))
	if _, err := s.Resolve(context.Background(), pathLib); !errors.Is(err, ErrNotFound) {
		t.Errorf("Resolve of a /other/store narinfo = %v, want ErrNotFound", err)
	}
}

func BenchmarkResolveCached(b *testing.B) {
	s := openStore(b, filepath.Join(fixtureDir, "cache-none"), "", trustedConfig(b))
	ctx := context.Background()
	mustResolve(b, s, pathLib)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Resolve(ctx, pathLib); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	if got := s.Stats().NarinfoGets; got != 1 {
		b.Errorf("NarinfoGets = %d, want 1", got)
	}
}
