package remote

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/remote/chunkindex"
	"github.com/narfs/narfs/remote/internal/tune"
)

// aliasServer serves a cache directory over http and records every path
// asked for. While holdNarinfo is set, a narinfo request is answered only
// once the alias of the same path has been asked for (or after 5 s), so a
// test sees whether the two were in flight together.
type aliasServer struct {
	mu    sync.Mutex
	paths []string
	alias chan struct{} // closed at the first alias request
	once  sync.Once
}

func newAliasServer(t *testing.T, dir string, holdNarinfo bool) (*aliasServer, string) {
	a := &aliasServer{alias: make(chan struct{})}
	files := http.FileServer(http.Dir(dir))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.paths = append(a.paths, r.URL.Path)
		a.mu.Unlock()
		switch {
		case strings.HasPrefix(r.URL.Path, "/index/") && len(strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/index/"), ".nidx")) == 32:
			a.once.Do(func() { close(a.alias) })
		case holdNarinfo && strings.HasSuffix(r.URL.Path, ".narinfo"):
			select {
			case <-a.alias:
			case <-time.After(5 * time.Second):
			}
		}
		files.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return a, srv.URL
}

func (a *aliasServer) count(path string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, p := range a.paths {
		if p == path {
			n++
		}
	}
	return n
}

// withAliases gives the indexed cache the alias of its path and the
// nix-cache-info line that announces aliases, as narfs push writes them.
func withAliases(t *testing.T, c *indexedCache, hash string, alias []byte) {
	t.Helper()
	putFile(t, filepath.Join(c.dir, chunkindex.AliasKey(hash)), alias)
	info, err := os.ReadFile(filepath.Join(c.dir, "nix-cache-info"))
	if err != nil {
		t.Fatal(err)
	}
	putFile(t, filepath.Join(c.dir, "nix-cache-info"), append(info, chunkindex.CacheInfoKey+": 1\n"...))
}

// indexedTree makes an indexed cache of pathTree and returns it, the
// path's hash part and its index object.
func indexedTree(t *testing.T) (*indexedCache, string, []byte) {
	t.Helper()
	c := makeIndexedCache(t, pathTree, "zstd")
	idx, err := os.ReadFile(filepath.Join(c.dir, "index", "x.nidx"))
	if err != nil {
		t.Fatal(err)
	}
	return c, hashPart(pathTree), idx
}

func openHTTPStore(t *testing.T, url string, cfg Config) *Core {
	t.Helper()
	s, err := openOne(context.Background(), url, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestIndexAliasFetchedWithNarinfo(t *testing.T) {
	c, hash, idx := indexedTree(t)
	withAliases(t, c, hash, idx)
	srv, url := newAliasServer(t, c.dir, true)
	s := openHTTPStore(t, url, byRanges(t))
	p := mustResolve(t, s, pathTree)
	select {
	case <-srv.alias:
	default:
		t.Fatal("the narinfo was answered before the index alias was asked for: not fetched together")
	}
	l, err := s.listing(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if !nar.SameTree(l.Root, c.listing.Root) {
		t.Fatal("listing differs from the NAR's")
	}
	if n := srv.count("/index/x.nidx"); n != 0 {
		t.Errorf("the narinfo's index object was fetched %d times besides its alias", n)
	}
	name, n := firstFile(c.listing)
	got, err := readChunked(t, s, p, name)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, contentsOf(c, n)) {
		t.Fatal("wrong contents")
	}
}

func TestIndexAliasStaleOrForeignIgnored(t *testing.T) {
	for _, tc := range []struct {
		name  string
		alias func(c *indexedCache, idx []byte) []byte
	}{
		// Same size, other bytes: the signature over the digest fails.
		{"tampered", func(_ *indexedCache, idx []byte) []byte {
			b := bytes.Clone(idx)
			b[len(b)/2] ^= 1
			return b
		}},
		// A validly signed index of the same path, for an object the
		// narinfo no longer names (the path was indexed anew since).
		{"stale", func(c *indexedCache, _ []byte) []byte {
			x := *c.x
			x.URL = "nar/old.nar.zstd"
			b, err := x.Encode()
			if err != nil {
				t.Fatal(err)
			}
			return b
		}},
		{"garbage", func(*indexedCache, []byte) []byte { return []byte("not an index") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, hash, idx := indexedTree(t)
			withAliases(t, c, hash, tc.alias(c, idx))
			srv, url := newAliasServer(t, c.dir, false)
			s := openHTTPStore(t, url, byRanges(t))
			p := mustResolve(t, s, pathTree)
			l, err := s.listing(context.Background(), p)
			if err != nil {
				t.Fatal(err)
			}
			if !nar.SameTree(l.Root, c.listing.Root) {
				t.Fatal("listing differs from the NAR's")
			}
			if srv.count("/index/x.nidx") != 1 {
				t.Errorf("the narinfo's index was not fetched after an unusable alias: %v", srv.paths)
			}
			kl, _ := known(s.caches[0].listings, hash)
			if kl == nil || kl.index() == nil {
				t.Fatal("the path is not read by its index")
			}
			if !bytes.Equal(kl.indexObject(), idx) {
				t.Fatal("the index in use is not the narinfo's")
			}
		})
	}
}

func TestIndexAliasNotAskedOfStockCaches(t *testing.T) {
	dir := copyCache(t, "cache-zstd")
	srv, url := newAliasServer(t, dir, false)
	s := openHTTPStore(t, url, trustedConfig(t))
	p := mustResolve(t, s, pathTree)
	if _, err := s.listing(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	for _, q := range srv.paths {
		if strings.HasPrefix(q, "/index/") {
			t.Fatalf("a stock cache was asked for %s", q)
		}
	}
}

// A cache without the nix-cache-info line is learnt from: once a narinfo
// names an index, later lookups ask for aliases too.
func TestIndexAliasLearntFromNarinfos(t *testing.T) {
	c, hash, idx := indexedTree(t)
	putFile(t, filepath.Join(c.dir, chunkindex.AliasKey(hash)), idx)
	srv, url := newAliasServer(t, c.dir, false)
	s := openHTTPStore(t, url, byRanges(t))
	mustResolve(t, s, pathTree)
	if srv.count("/"+chunkindex.AliasKey(hash)) != 0 {
		t.Fatal("alias asked for before the cache showed it indexes paths")
	}
	if !s.caches[0].up.IndexesDeclared() {
		t.Fatal("a narinfo naming an index did not turn aliases on")
	}
}

// TestIndexAliasHangingKey: a cache that never answers for the alias key
// (a stuck CDN object, a proxy hanging on some keys) costs a lookup and
// listing a moment, not the whole timeout: the narinfo's own index is
// fetched after a short wait, and the path reads by its index.
func TestIndexAliasHangingKey(t *testing.T) {
	c, hash, idx := indexedTree(t)
	withAliases(t, c, hash, idx)
	release := make(chan struct{})
	files := http.FileServer(http.Dir(c.dir))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/"+chunkindex.AliasKey(hash) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		files.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	cfg := byRanges(t)
	cfg.Timeout = time.Minute
	s := openHTTPStore(t, srv.URL, cfg)
	start := time.Now()
	p := mustResolve(t, s, pathTree)
	l, err := s.listing(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > tune.AliasWaitMax+5*time.Second {
		t.Errorf("lookup and listing took %v with the alias key hanging; want the narinfo's index after at most %v", d, tune.AliasWaitMax)
	}
	if !nar.SameTree(l.Root, c.listing.Root) {
		t.Fatal("listing differs from the NAR's")
	}
	if kl, _ := known(s.caches[0].listings, hash); kl == nil || kl.index() == nil {
		t.Fatal("the path is not read by its index")
	}
	// That for a while lookups then ask for no alias (one hanging key
	// does not cost every lookup its wait) is upstream's
	// TestAliasPausedAfterSlow.
}
