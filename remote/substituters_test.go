package remote

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/narfs/narfs/remote/stats"
)

// twoCaches makes a zstd and an xz copy of the fixture caches: the
// compression of a resolved path tells which cache answered. onlyA and
// onlyB are removed from the other cache; every other path is in both.
func twoCaches(t *testing.T, onlyA, onlyB string) (a, b string) {
	t.Helper()
	a, b = copyCache(t, "cache-zstd"), copyCache(t, "cache-xz")
	removeFile(t, filepath.Join(b, hashPart(onlyA)+".narinfo"))
	removeFile(t, filepath.Join(a, hashPart(onlyB)+".narinfo"))
	return a, b
}

func setPriority(t *testing.T, dir string, prio string) {
	t.Helper()
	putFile(t, filepath.Join(dir, "nix-cache-info"), []byte("StoreDir: /nix/store\nPriority: "+prio+"\n"))
}

func openSubs(t *testing.T, cfg Config, urls ...string) *Core {
	t.Helper()
	g, err := Open(context.Background(), urls, cfg)
	if err != nil {
		t.Fatalf("OpenSubstituters %v: %v", urls, err)
	}
	t.Cleanup(func() { g.Close() })
	return g
}

func fileURL(t *testing.T, dir, query string) string {
	t.Helper()
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if query != "" {
		return "file://" + abs + "?" + query
	}
	return "file://" + abs
}

// answeredBy resolves base and says which cache's narinfo came back.
func answeredBy(t *testing.T, g *Core, base string) string {
	t.Helper()
	p, err := g.Resolve(context.Background(), base)
	if err != nil {
		t.Fatalf("Resolve %s: %v", base, err)
	}
	switch p.NarInfo.Compression {
	case "zstd":
		return "zstd"
	case "xz", "":
		return "xz"
	}
	return p.NarInfo.Compression
}

func TestSubstitutersPriority(t *testing.T) {
	a, b := twoCaches(t, pathLib, pathApp)
	cfg := trustedConfig(t)
	for _, tc := range []struct {
		name         string
		prioA, prioB string // nix-cache-info; "" keeps none (0)
		qA, qB       string
		want         string // the cache that serves a path both hold
	}{
		{"same priority: order given", "", "", "", "", "zstd"},
		{"nix-cache-info priority", "50", "10", "", "", "xz"},
		{"?priority= beats nix-cache-info", "50", "10", "priority=5", "", "zstd"},
		{"negative priority", "", "", "", "priority=-1", "xz"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, c := range []struct{ dir, prio string }{{a, tc.prioA}, {b, tc.prioB}} {
				if c.prio == "" {
					putFile(t, filepath.Join(c.dir, "nix-cache-info"), []byte("StoreDir: /nix/store\n"))
				} else {
					setPriority(t, c.dir, c.prio)
				}
			}
			cfg.CacheDir = t.TempDir()
			g := openSubs(t, cfg, fileURL(t, a, tc.qA), fileURL(t, b, tc.qB))
			if got := answeredBy(t, g, pathTreeSmall); got != tc.want {
				t.Errorf("a path in both caches came from the %s cache, want %s", got, tc.want)
			}
			// Disjoint paths come from the one cache that has them,
			// whatever the order.
			if got := answeredBy(t, g, pathLib); got != "zstd" {
				t.Errorf("a path only in the zstd cache came from %s", got)
			}
			if got := answeredBy(t, g, pathApp); got != "xz" {
				t.Errorf("a path only in the xz cache came from %s", got)
			}
			p, _ := g.Resolve(context.Background(), pathApp)
			if !strings.HasSuffix(p.Cache(), filepath.Base(b)) && !strings.Contains(p.Cache(), filepath.Base(b)+"?") {
				t.Errorf("Cache() = %q, want the xz cache %s", p.Cache(), b)
			}
			missing := "0000000000000000000000000000000a-missing"
			if _, err := g.Resolve(context.Background(), missing); !errors.Is(err, ErrNotFound) {
				t.Errorf("a path no cache has: %v, want ErrNotFound", err)
			}
		})
	}
}

// A path the preferred cache holds without a trusted signature comes from
// the next cache that vouches for it; a broken narinfo in one cache does
// not hide the path in another either.
func TestSubstitutersUntrustedFallsThrough(t *testing.T) {
	a, b := copyCache(t, "cache-zstd"), copyCache(t, "cache-xz")
	ni := readNarinfo(t, a, hashPart(pathLib))
	ni.Sigs = nil
	writeNarinfo(t, a, ni)
	putFile(t, filepath.Join(a, hashPart(pathApp)+".narinfo"), []byte("garbage\n"))
	g := openSubs(t, trustedConfig(t), fileURL(t, a, ""), fileURL(t, b, ""))
	if got := answeredBy(t, g, pathLib); got != "xz" {
		t.Errorf("unsigned in the first cache, signed in the second: served by %s", got)
	}
	if got := answeredBy(t, g, pathApp); got != "xz" {
		t.Errorf("malformed in the first cache, fine in the second: served by %s", got)
	}
	// Only untrusted anywhere: untrusted, not missing.
	removeFile(t, filepath.Join(b, hashPart(pathLib)+".narinfo"))
	cfg := trustedConfig(t)
	g2 := openSubs(t, cfg, fileURL(t, a, ""), fileURL(t, b, ""))
	if _, err := g2.Resolve(context.Background(), pathLib); !errors.Is(err, ErrUntrusted) {
		t.Errorf("only an unsigned narinfo: %v, want ErrUntrusted", err)
	}
}

// Reads of a path go to the cache that resolved it, and a NAR both caches
// hold is kept once in the shared local cache.
func TestSubstitutersReadFromAnsweringCache(t *testing.T) {
	a, b := twoCaches(t, pathLib, pathTreeSmall)
	g := openSubs(t, trustedConfig(t), fileURL(t, a, ""), fileURL(t, b, ""))
	ctx := context.Background()
	p, err := g.Resolve(ctx, pathTreeSmall)
	if err != nil {
		t.Fatal(err)
	}
	nd := narBytes(t, pathTreeSmall)
	sub, node := firstFile(buildListing(t, nd))
	f, err := g.openFile(ctx, p, sub)
	if err != nil {
		t.Fatalf("OpenFile of a path only the second cache has: %v", err)
	}
	got, _ := io.ReadAll(f.Reader())
	f.Close()
	if string(got) != string(nd[node.NarOffset:node.NarOffset+node.Size]) {
		t.Errorf("read %d bytes, want the file's %d", len(got), node.Size)
	}
	st := g.caches
	if n := st[0].counts().NarGets; n != 0 {
		t.Errorf("the first cache got %d NAR requests for a path it does not hold", n)
	}
	if n := st[1].counts().NarGets; n != 1 {
		t.Errorf("the second cache got %d NAR requests, want 1", n)
	}
	if s := g.Stats(); s.NarGets != 1 || s.NarinfoGets < 2 {
		t.Errorf("summed stats: %d NAR GETs, %d narinfo GETs; want 1 and ≥ 2 (both caches asked)", s.NarGets, s.NarinfoGets)
	}
	if g.Stats().CacheBytes <= 0 {
		t.Errorf("shared local cache usage %d after a fetch", g.Stats().CacheBytes)
	}
}

// flakyCache serves dir over HTTP; while down is set, everything but
// nix-cache-info fails with 503, or hangs until the client gives up when
// hang is set too. narinfos counts narinfo requests.
type flakyCache struct {
	srv        *httptest.Server
	down, hang atomic.Bool
	narinfos   atomic.Int64
	inflight   atomic.Int64 // requests not answered yet
}

func newFlakyCache(t *testing.T, dir string) *flakyCache {
	c := &flakyCache{}
	files := http.FileServer(http.Dir(dir))
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, ".narinfo") {
			c.narinfos.Add(1)
		}
		c.inflight.Add(1)
		defer c.inflight.Add(-1)
		if c.down.Load() && r.URL.Path != "/nix-cache-info" {
			if c.hang.Load() {
				<-r.Context().Done()
				return
			}
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		files.ServeHTTP(w, r)
	}))
	t.Cleanup(c.srv.Close)
	return c
}

// A preferred cache that is down costs one timeout, is then skipped, and
// never hides the other cache's paths; a path only it may hold fails as
// unavailable, not as missing; once it answers again it is used again.
func TestSubstitutersCacheDown(t *testing.T) {
	a, b := twoCaches(t, pathLib, pathApp)
	fa := newFlakyCache(t, a)
	fa.down.Store(true)
	fa.hang.Store(true)
	cfg := trustedConfig(t)
	cfg.Timeout = time.Second
	g := openSubs(t, cfg, fa.srv.URL, fileURL(t, b, ""))
	ctx := context.Background()

	t0 := time.Now()
	if got := answeredBy(t, g, pathApp); got != "xz" {
		t.Errorf("with the first cache hanging, a path of the second came from %s", got)
	}
	if d := time.Since(t0); d > 3*cfg.Timeout {
		t.Errorf("first lookup with a hanging cache took %v, want about one timeout (%v)", d, cfg.Timeout)
	}
	// Skipped now: no request to it, no wait.
	before := fa.narinfos.Load()
	t0 = time.Now()
	if got := answeredBy(t, g, pathTreeSmall); got != "xz" {
		t.Errorf("a path in both caches while the first is skipped came from %s", got)
	}
	if d := time.Since(t0); d > cfg.Timeout/2 {
		t.Errorf("a lookup while the hanging cache is skipped took %v", d)
	}
	if n := fa.narinfos.Load() - before; n != 0 {
		t.Errorf("%d narinfo requests to a skipped cache", n)
	}
	// A path only the down cache has: not "no such path".
	_, err := g.Resolve(ctx, pathLib)
	if err == nil || errors.Is(err, ErrNotFound) || errors.Is(err, ErrUntrusted) {
		t.Errorf("a path only the down cache holds: %v, want an unavailable error", err)
	}

	// Back up: after the skip it is asked again and wins its paths. A
	// lookup sent while it hung (the lookahead's, of references) is
	// shared by later callers until it times out: let those end first.
	// The server sees such a request end a moment before narfs does,
	// and its timeout marks the cache down again: a lookup in that moment
	// fails, the next one must not.
	fa.down.Store(false)
	for deadline := time.Now().Add(3 * cfg.Timeout); fa.inflight.Load() > 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	var p *PathInfo
	for deadline := time.Now().Add(3 * cfg.Timeout); ; time.Sleep(50 * time.Millisecond) {
		g.caches[0].up.MarkUp() // ends the skip now
		if p, err = g.Resolve(ctx, pathLib); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatalf("after the first cache came back: %v", err)
	}
	if p.NarInfo.Compression != "zstd" {
		t.Errorf("after the first cache came back, its path came from the %s cache", p.NarInfo.Compression)
	}
}

// A path the skipped cache served before is still served from what narfs
// recorded of it, at its rank.
func TestSubstitutersSkippedCacheServesLocalRecords(t *testing.T) {
	a, b := copyCache(t, "cache-zstd"), copyCache(t, "cache-xz")
	fa := newFlakyCache(t, a)
	cfg := trustedConfig(t)
	cfg.Timeout = time.Second
	g := openSubs(t, cfg, fa.srv.URL, fileURL(t, b, ""))
	ctx := context.Background()
	p, err := g.Resolve(ctx, pathTreeSmall)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.caches[0].materialize(ctx, p); err != nil {
		t.Fatal(err)
	}
	fa.down.Store(true)
	g.caches[0].up.MarkDown(errors.New("test: down"))
	if got := answeredBy(t, g, pathTreeSmall); got != "zstd" {
		t.Errorf("a path fetched from the skipped cache before came from %s", got)
	}
}

// The root listing is the union of the caches', each path once, from the
// cache Resolve would pick.
func TestSubstitutersPaths(t *testing.T) {
	a, b := twoCaches(t, pathLib, pathApp)
	setPriority(t, b, "10")
	setPriority(t, a, "20")
	g := openSubs(t, trustedConfig(t), fileURL(t, a, ""), fileURL(t, b, ""))
	seen := map[string]string{}
	err := g.Paths(context.Background(), func(p *PathInfo) {
		if _, dup := seen[p.Path.String()]; dup {
			t.Errorf("%s listed twice", p.Path)
		}
		seen[p.Path.String()] = p.NarInfo.Compression
	})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadDir(a)
	n := 0
	for _, e := range want {
		if strings.HasSuffix(e.Name(), ".narinfo") {
			n++
		}
	}
	if len(seen) != n+1 { // a's paths plus the one only b has
		t.Errorf("listed %d paths, want %d", len(seen), n+1)
	}
	if seen[pathLib] != "zstd" || seen[pathApp] != "xz" {
		t.Errorf("disjoint paths listed from %q and %q", seen[pathLib], seen[pathApp])
	}
	if seen[pathTreeSmall] != "xz" {
		t.Errorf("a path in both listed from %q, want the preferred xz cache", seen[pathTreeSmall])
	}
}

// Stats.add sums every field: a counter added to Stats but not to add
// would read 0 on a mount of several caches. coreOnly fields are the
// core's own (set once by Core.Stats, not summed).
func TestStatsAddCoversEveryField(t *testing.T) {
	coreOnly := map[string]bool{"Caches": true, "CacheBytes": true}
	var one stats.Stats
	v := reflect.ValueOf(&one).Elem()
	var fill func(v reflect.Value)
	fill = func(v reflect.Value) {
		switch v.Kind() {
		case reflect.Int64:
			v.SetInt(1)
		case reflect.Array:
			for i := range v.Len() {
				fill(v.Index(i))
			}
		case reflect.Struct:
			for i := range v.NumField() {
				if coreOnly[v.Type().Field(i).Name] {
					continue
				}
				fill(v.Field(i))
			}
		default:
			t.Fatalf("Stats has a field of kind %s; teach add and this test about it", v.Kind())
		}
	}
	fill(v)
	var sum stats.Stats
	sum.Add(one)
	sum.Add(one)
	var check func(v reflect.Value, name string)
	check = func(v reflect.Value, name string) {
		switch v.Kind() {
		case reflect.Int64:
			if v.Int() != 2 {
				t.Errorf("%s: %d after adding 1 twice", name, v.Int())
			}
		case reflect.Array:
			for i := range v.Len() {
				check(v.Index(i), name)
			}
		case reflect.Struct:
			for i := range v.NumField() {
				if coreOnly[v.Type().Field(i).Name] {
					continue
				}
				check(v.Field(i), name+"."+v.Type().Field(i).Name)
			}
		}
	}
	check(reflect.ValueOf(sum), "Stats")
}

// A reference the first cache lacks is looked ahead in the next: walking
// a closure spread over two caches costs no round trip per path either.
func TestSubstitutersLookaheadCrossesCaches(t *testing.T) {
	a, b := twoCaches(t, pathApp, pathLib) // app only in a, lib (its reference) only in b
	g := openSubs(t, trustedConfig(t), fileURL(t, a, ""), fileURL(t, b, ""))
	if _, err := g.Resolve(context.Background(), pathApp); err != nil {
		t.Fatal(err)
	}
	ca, cb := g.caches[0], g.caches[1]
	waitIdle(t, ca.ahead.lookq)
	waitIdle(t, cb.ahead.lookq)
	// Resolve returned with a's answer; b was asked for app at the same
	// time, and its miss may still be on the way: let it land before
	// counting b's requests.
	for deadline := time.Now().Add(10 * time.Second); func() bool { _, err := cb.up.Cached(hashPart(pathApp)); return err == nil }(); {
		if time.Now().After(deadline) {
			t.Fatal("the second cache's lookup of app never ended")
		}
		time.Sleep(time.Millisecond)
	}
	if tp, _ := cb.up.Cached(hashPart(pathLib)); tp == nil {
		t.Errorf("app's reference lib, only in the second cache, was not looked up ahead there")
	}
	// A reader's lookup now needs no request to the second cache.
	before := cb.counts().NarinfoGets
	if got := answeredBy(t, g, pathLib); got != "xz" {
		t.Errorf("lib came from %s", got)
	}
	if n := cb.counts().NarinfoGets - before; n != 0 {
		t.Errorf("%d narinfo requests for a path looked up ahead", n)
	}
}

// The core's generations: a lookup answered from a lying .ls, then the
// open that verifies the NAR, moves the path's generation once and tells
// subscribers before Open returns; the file opened is the verified one.
func TestCoreGenMovesOnLie(t *testing.T) {
	ctx := context.Background()
	dir := copyCache(t, "cache-none")
	truth := buildListing(t, narBytes(t, pathTreeSmall))
	_, first := firstFile(truth)
	delta := int64(-1)
	if first.Size%8 == 1 {
		delta = 1
	}
	sub := lieAboutSize(t, dir, pathTreeSmall, delta)
	trueNode, _ := truth.Find(sub)

	c := openSubs(t, trustedConfig(t), fileURL(t, dir, ""))
	p, err := c.Resolve(ctx, pathTreeSmall)
	if err != nil {
		t.Fatal(err)
	}
	var told []uint64
	cancel := c.Subscribe(func(hash string, gen uint64) {
		if hash == p.Path.Hash {
			told = append(told, gen)
		}
	})
	defer cancel()
	if g := c.Gen(p); g != 0 {
		t.Fatalf("Gen %d before any answer", g)
	}
	n, err := c.Lookup(ctx, p, sub)
	if err != nil || n.Size != trueNode.Size+delta {
		t.Fatalf("Lookup = %+v, %v; want the .ls's size", n, err)
	}
	f, err := c.Open(ctx, p, sub)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if len(told) != 1 || told[0] != 1 || c.Gen(p) != 1 {
		t.Fatalf("told %v, Gen %d after Open; want [1] and 1", told, c.Gen(p))
	}
	if f.Node().Size != trueNode.Size {
		t.Fatalf("File size %d, want the verified %d", f.Node().Size, trueNode.Size)
	}
	buf := make([]byte, trueNode.Size)
	if got, ok := f.ReadCached(buf); !ok || int64(got) != trueNode.Size {
		t.Fatalf("ReadCached = %d, %v", got, ok)
	}
	st := c.Stats()
	if len(st.Caches) != 1 || st.Caches[0].URL != c.URL() || st.CacheBytes <= 0 || st.Corrupt != 1 {
		t.Fatalf("Stats: caches %+v, CacheBytes %d, Corrupt %d", st.Caches, st.CacheBytes, st.Corrupt)
	}
	// An agreeing path: no move.
	q, err := c.Resolve(ctx, pathLib)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Root(ctx, q); err != nil {
		t.Fatal(err)
	}
	if _, err := c.VerifiedListing(ctx, q); err != nil {
		t.Fatal(err)
	}
	if c.Gen(q) != 0 || len(told) != 1 {
		t.Fatalf("an agreeing path moved: Gen %d, told %v", c.Gen(q), told)
	}
	c.Forget(p)
	if c.Gen(p) != 0 {
		t.Fatal("Forget kept the generation")
	}
}
