package integration

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// scrapeMetrics fetches /metrics and returns the samples by their full
// name with labels, e.g. `narfs_upstream_bytes_total{cache="…",kind="nar"}`.
func scrapeMetrics(t testing.TB, addr string) (map[string]float64, string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %v %s", err, resp.Status)
	}
	samples := map[string]float64{}
	for _, l := range strings.Split(string(body), "\n") {
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		v, err := strconv.ParseFloat(l[i+1:], 64)
		if err != nil {
			t.Fatalf("sample %q: %v", l, err)
		}
		samples[l[:i]] = v
	}
	return samples, string(body)
}

// sum adds the samples of a metric whose labels contain every one of match.
func sum(samples map[string]float64, name string, match ...string) float64 {
	var s float64
	for k, v := range samples {
		if k != name && !strings.HasPrefix(k, name+"{") {
			continue
		}
		ok := true
		for _, m := range match {
			ok = ok && strings.Contains(k, m)
		}
		if ok {
			s += v
		}
	}
	return s
}

// The metrics count what the cache sent and what readers got, and name
// no store path.
func TestMetricsCountUpstreamAndServed(t *testing.T) {
	c := nixClosure(t)
	h := serveHTTP(t, c.caches["zstd"])
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	// Without passthrough every read is a FUSE READ narfs can count.
	m := mountNarfs(t, h.URL, nil, "--trusted-public-keys", c.publicKey, "--metrics-listen", addr, "--passthrough=false", "--lookahead-references=false")

	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz: %v %v", err, resp)
	}
	resp.Body.Close()

	file := filepath.Join(m.Dir, c.app, "bin/app")
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}

	// The daemon reads bodies as the server writes them: wait for the two
	// counts to meet.
	var s map[string]float64
	var text string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		s, text = scrapeMetrics(t, addr)
		if int64(sum(s, "narfs_upstream_bytes_total")) == h.sent.Load() || time.Now().After(deadline) {
			break
		}
	}
	up := sum(s, "narfs_upstream_bytes_total")
	if up <= 0 || int64(up) != h.sent.Load() {
		t.Errorf("upstream bytes %v, the server sent %d", up, h.sent.Load())
	}
	if nar := sum(s, "narfs_upstream_bytes_total", `kind="nar"`); nar <= 0 {
		t.Errorf("no NAR bytes counted")
	}
	served := sum(s, "narfs_served_bytes_total")
	if int(served) != len(data) {
		t.Errorf("bytes served %v, the file has %d", served, len(data))
	}
	if amp, want := sum(s, "narfs_amplification_ratio"), up/served; amp != want {
		t.Errorf("amplification %v, want %v", amp, want)
	}
	if hits := sum(s, "narfs_narinfo_lookups_total", `outcome="hit"`); hits < 1 {
		t.Errorf("narinfo hits %v, want ≥ 1", hits)
	}
	if sum(s, "narfs_nar_fetches_total") < 1 || sum(s, "narfs_cache_usage_bytes") <= 0 {
		t.Errorf("fetches %v, cache usage %v", sum(s, "narfs_nar_fetches_total"), sum(s, "narfs_cache_usage_bytes"))
	}
	// (bin/app is small: its contents come with its OPEN, no READ.)
	for _, op := range []string{"lookup", "open"} {
		if sum(s, "narfs_fuse_operations_total", `op="`+op+`"`) < 1 {
			t.Errorf("no %s operations counted", op)
		}
	}
	if sum(s, "narfs_upstream_requests_total", `kind="narinfo"`) < 1 {
		t.Errorf("no narinfo requests counted")
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", text)
	}

	// A missing path is a miss, then a negative answer.
	os.Stat(filepath.Join(m.Dir, "00000000000000000000000000000000-missing"))
	os.Stat(filepath.Join(m.Dir, "00000000000000000000000000000000-missing2"))
	s, text = scrapeMetrics(t, addr)
	if sum(s, "narfs_narinfo_lookups_total", `outcome="miss"`) < 1 {
		t.Errorf("no narinfo miss counted")
	}

	// No label names a store path or a hash part.
	hash := regexp.MustCompile(`[0-9a-df-np-sv-z]{32}`)
	for k := range s {
		if strings.Contains(k, "/nix/store") || hash.MatchString(k) {
			t.Errorf("label leaks a store path: %s", k)
		}
	}
	if t.Failed() {
		t.Logf("/metrics after the misses:\n%s", text)
	}

	out, err := bashC(t, narfsBin+" stats --metrics-url http://"+addr)
	if err != nil {
		t.Fatalf("narfs stats: %v\n%s", err, out)
	}
	for _, want := range []string{"uptime:", "narinfo lookups:", "hit ", "upstream bytes:", "amplification:", "NAR fetches:", "verification failures: 0"} {
		if !strings.Contains(out, want) {
			t.Errorf("narfs stats lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(out, fmt.Sprintf("(%d;", len(data))) {
		t.Errorf("narfs stats does not show %d bytes served:\n%s", len(data), out)
	}
}

// A small file's contents reach the kernel with its first OPEN once they
// are verified here: reading a tree of small files costs (almost) no READ
// round trip, every byte is the verified file's, and a second open gives
// nothing again. For a stock cache that is from the path's fetch on; for a
// cache written by narfs push (chunks fetched at reads, never at opens),
// from when the chunks are here: a second mount of the same cache dir.
func TestMountSmallFilesComeWithOpen(t *testing.T) {
	c := nixClosure(t)
	var files []string
	var sizes []int64
	var total int64
	for _, p := range c.all {
		filepath.WalkDir(filepath.Join("/nix/store", p), func(path string, d os.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return err
			}
			if fi, err := d.Info(); err == nil && fi.Size() < 1<<20 {
				files = append(files, strings.TrimPrefix(path, "/nix/store/"))
				sizes = append(sizes, fi.Size())
				total += fi.Size()
			}
			return nil
		})
	}
	if len(files) < 100 {
		t.Fatalf("only %d small files in the closure", len(files))
	}
	readAll := func(t *testing.T, dir string) {
		t.Helper()
		for _, f := range files {
			want, err := os.ReadFile(filepath.Join("/nix/store", f))
			if err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(filepath.Join(dir, f))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%s: %d bytes differ from Nix's %d", f, len(got), len(want))
			}
		}
	}
	// The kernel drops a few pages now and then even with no memory
	// pressure (seen on this machine for native files too); those are
	// READ again.
	limit := float64(len(files)) / 100
	// What those few READs may serve again: the largest files' bytes (one
	// dropped page of a 20 KiB file is one READ of all of it).
	slices.Sort(sizes)
	slices.Reverse(sizes)
	var mayAgain int64
	for _, n := range sizes[:min(len(sizes), int(limit)+1)] {
		mayAgain += n
	}
	check := func(t *testing.T, dir, addr string) {
		t.Helper()
		var reads, served [2]float64
		for round := range 2 {
			readAll(t, dir)
			s, _ := scrapeMetrics(t, addr)
			reads[round] = sum(s, "narfs_fuse_operations_total", `op="read"`)
			served[round] = sum(s, "narfs_served_bytes_total")
		}
		if reads[0] > limit || reads[1]-reads[0] > limit {
			t.Errorf("READs: %v then %v for %d small files read twice, want almost none", reads[0], reads[1]-reads[0], len(files))
		}
		if served[0] < float64(total) || served[0] > float64(total)*1.01 {
			t.Errorf("served %v bytes for the first read of files of %d bytes", served[0], total)
		}
		if again := served[1] - served[0]; again > max(float64(total)/10, float64(mayAgain)) {
			t.Errorf("the second read served %v bytes of %d again: the kernel was given them twice", again, total)
		}
	}
	t.Run("stock", func(t *testing.T) {
		h := serveHTTP(t, c.caches["zstd"])
		addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		m := mountNarfs(t, h.URL, nil, "--trusted-public-keys", c.publicKey, "--metrics-listen", addr)
		check(t, m.Dir, addr)
	})
	t.Run("indexed", func(t *testing.T) {
		h := serveHTTP(t, pushClosure(t, c, "--compression", "zstd"))
		cache := t.TempDir()
		first := mountNarfs(t, h.URL, nil, "--trusted-public-keys", c.publicKey, "--cache-dir", cache)
		readAll(t, first.Dir)
		first.stop(t)
		gets := h.narGets()
		addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		m := mountNarfs(t, h.URL, nil, "--trusted-public-keys", c.publicKey, "--cache-dir", cache, "--metrics-listen", addr)
		check(t, m.Dir, addr)
		if n := h.narGets() - gets; n != 0 {
			t.Errorf("the second mount of the cache dir made %d NAR requests", n)
		}
	})
}
