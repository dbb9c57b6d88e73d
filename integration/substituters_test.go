package integration

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// switchableCache serves a directory over HTTP, counting requests by
// path; while down is set everything but nix-cache-info answers 503.
type switchableCache struct {
	URL  string
	down atomic.Bool
	mu   sync.Mutex // protects get
	get  map[string]int
}

func serveSwitchable(t *testing.T, dir string) *switchableCache {
	t.Helper()
	c := &switchableCache{get: map[string]int{}}
	files := http.FileServer(http.Dir(dir))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		c.get[strings.TrimPrefix(r.URL.Path, "/")]++
		c.mu.Unlock()
		if c.down.Load() && r.URL.Path != "/nix-cache-info" {
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		files.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	c.URL = srv.URL
	return c
}

// requests counts requests whose path has the prefix.
func (c *switchableCache) requests(prefix string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for k, v := range c.get {
		if strings.HasPrefix(k, prefix) {
			n += v
		}
	}
	return n
}

// substituterCaches writes two real Nix caches of the fixture closure:
// "own" (zstd, file://) without the app and root paths, and "public" (xz, served
// over HTTP) with only app and lib; lib is in both. own says Priority 40
// in nix-cache-info.
func substituterCaches(t *testing.T, c *closure) (own, public string) {
	t.Helper()
	own, public = filepath.Join(t.TempDir(), "own"), filepath.Join(t.TempDir(), "public")
	var ownPaths []string
	for _, p := range c.all {
		if p != c.app && p != c.root { // copies are recursive: root holds app
			ownPaths = append(ownPaths, "/nix/store/"+p)
		}
	}
	if err := nixCopyTo(c.dir, "file://"+own+"?compression=zstd&secret-key="+c.secretKey, ownPaths...); err != nil {
		t.Fatal(err)
	}
	// app's closure is app and lib.
	if err := nixCopyTo(c.dir, "file://"+public+"?compression=xz&secret-key="+c.secretKey, "/nix/store/"+c.app); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(own, "nix-cache-info"), []byte("StoreDir: /nix/store\nPriority: 40\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return own, public
}

// libPath is the fixture's lib path (app references it).
func libPath(t *testing.T, c *closure) string {
	t.Helper()
	for _, p := range c.all {
		if strings.HasSuffix(p, "-narfs-it-lib") {
			return p
		}
	}
	t.Fatal("no lib path in the fixture closure")
	return ""
}

// Two caches with overlapping and disjoint paths, through the mount and
// the CLI: each path is served by the first cache in Nix's order that has
// it, and `narfs info` says which.
func TestMountSubstituters(t *testing.T) {
	c := nixClosure(t)
	own, public := substituterCaches(t, c)
	pub := serveSwitchable(t, public)
	lib := libPath(t, c)
	env := []string{"NARFS_TRUSTED_PUBLIC_KEYS=" + c.publicKey}
	ownURL := "file://" + own
	// public at priority 10 beats own's 40 from nix-cache-info.
	pubURL := pub.URL + "?priority=10"
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	m := mountNarfs(t, pubURL, env, "--metrics-listen", addr, ownURL)

	// Disjoint: app only in public, the trees only in own.
	out, err := bashC(t, "cat "+m.Dir+"/"+c.app+"/bin/app")
	if err != nil || !strings.Contains(out, "app-ok") {
		t.Errorf("app (only in the public cache) through the mount: %q, %v", out, err)
	}
	want, err := os.ReadFile("/nix/store/" + lib + "/share/doc/README")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range c.caPaths {
		if _, err := os.Lstat(filepath.Join(m.Dir, p)); err != nil {
			t.Errorf("%s (only in own) through the mount: %v", p, err)
		}
	}
	// Overlap: lib comes from public, the preferred cache.
	got, err := os.ReadFile(filepath.Join(m.Dir, lib, "share/doc/README"))
	if err != nil || string(got) != string(want) {
		t.Errorf("lib's README through the mount: %q, %v", got, err)
	}
	if n := pub.requests("nar/"); n == 0 {
		t.Errorf("lib was read, but the preferred public cache got no NAR request")
	}
	// Upstream metrics per cache: each cache's own NAR bytes.
	samples, _ := scrapeMetrics(t, addr)
	for _, u := range []string{pub.URL, ownURL} {
		if v := sum(samples, "narfs_upstream_bytes_total", `cache="`+u, `kind="nar"`); v <= 0 {
			t.Errorf("narfs_upstream_bytes_total of cache %s, kind nar: %v after reads from it", u, v)
		}
	}
	// narfs stats breaks the traffic down by cache.
	out, err = bashC(t, narfsBin+" stats --metrics-url http://"+addr)
	if err != nil || !strings.Contains(out, "  "+pub.URL) || !strings.Contains(out, "  "+ownURL+": ") {
		t.Errorf("narfs stats of a mount of two caches: %v\n%s", err, out)
	}

	// The CLI takes the same URLs, and info names the cache.
	out, _, code := narfs(t, env, "info", ownURL, pubURL, lib)
	if code != 0 || !strings.Contains(out, "Cache:       "+pub.URL) || !strings.Contains(out, "Compression: xz") {
		t.Errorf("narfs info of lib in both caches: exit %d\n%s\nwant the public cache", code, out)
	}
	out, _, code = narfs(t, env, "info", ownURL, pubURL, c.caPaths[0])
	if code != 0 || !strings.Contains(out, "Cache:       "+ownURL) {
		t.Errorf("narfs info of a path only own has: exit %d\n%s", code, out)
	}
	out, _, code = narfs(t, env, "cat", ownURL, pubURL, c.app+"/bin/app")
	if code != 0 || !strings.Contains(out, "app-ok") {
		t.Errorf("narfs cat with two caches: exit %d %q", code, out)
	}
	out, _, code = narfs(t, env, "ls", ownURL, pubURL, lib+"/lib")
	if code != 0 || !strings.Contains(out, "libfake.so.1") {
		t.Errorf("narfs ls with two caches: exit %d %q", code, out)
	}
	// Without ?priority= own's nix-cache-info Priority 40 loses to
	// public's default 0, whatever the order.
	out, _, _ = narfs(t, env, "info", ownURL, pub.URL, lib)
	if !strings.Contains(out, "Cache:       "+pub.URL) {
		t.Errorf("own at Priority 40 before public at 0: info says\n%s", out)
	}
	out, _, _ = narfs(t, env, "info", pub.URL+"?priority=50", ownURL, lib)
	if !strings.Contains(out, "Cache:       "+ownURL) {
		t.Errorf("public at ?priority=50 before own at 40: info says\n%s", out)
	}

	// No URL: nix.conf's substituters and extra-substituters.
	conf := t.TempDir()
	if err := os.WriteFile(filepath.Join(conf, "nix.conf"), []byte("substituters = "+ownURL+"\nextra-substituters = "+pub.URL+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _, code = narfs(t, append(env, "NIX_CONF_DIR="+conf), "cat", c.app+"/bin/app")
	if code != 0 || !strings.Contains(out, "app-ok") {
		t.Errorf("narfs cat with the substituters of nix.conf: exit %d %q", code, out)
	}
}

// The preferred cache goes down: the other cache's paths keep working,
// each lookup waits at most one timeout and the down cache is then
// skipped (logged once); a path only the down cache has is EIO, not
// ENOENT; paths already fetched from it still read.
func TestMountSubstituterDown(t *testing.T) {
	c := nixClosure(t)
	own, public := substituterCaches(t, c)
	ownSrv := serveSwitchable(t, own)
	env := []string{"NARFS_TRUSTED_PUBLIC_KEYS=" + c.publicKey}
	m := mountNarfs(t, "file://"+public+"?priority=50", env, "--timeout", "2s", ownSrv.URL+"?priority=1")
	lib := libPath(t, c)
	// Fetched while up.
	if _, err := os.ReadFile(filepath.Join(m.Dir, lib, "share/doc/README")); err != nil {
		t.Fatal(err)
	}
	ownSrv.down.Store(true)

	t0 := time.Now()
	out, err := bashC(t, "cat "+m.Dir+"/"+c.app+"/bin/app")
	if err != nil || !strings.Contains(out, "app-ok") {
		t.Errorf("a path of the cache that is up, with the preferred one down: %q, %v", out, err)
	}
	if d := time.Since(t0); d > 6*time.Second {
		t.Errorf("first lookup with a cache down took %v; want at most about one --timeout (2s)", d)
	}
	before := ownSrv.requests("")
	t0 = time.Now()
	var st syscall.Stat_t
	err = syscall.Lstat(filepath.Join(m.Dir, c.caPaths[0]), &st)
	if !errors.Is(err, syscall.EIO) {
		t.Errorf("stat of a path only the down cache holds: %v, want EIO (not a miss)", err)
	}
	if d := time.Since(t0); d > time.Second {
		t.Errorf("a lookup while the down cache is skipped took %v", d)
	}
	if n := ownSrv.requests("") - before; n != 0 {
		t.Errorf("%d requests to the cache while it is skipped", n)
	}
	// Fetched from it before: still served.
	if _, err := os.ReadFile(filepath.Join(m.Dir, lib, "share/doc/README")); err != nil {
		t.Errorf("a path fetched from the down cache before: %v", err)
	}
	if n := strings.Count(m.Log(), "skipping it for a while"); n != 1 {
		t.Errorf("the down cache was logged %d times, want once", n)
	}
}
