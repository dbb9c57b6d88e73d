package integration

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// TestBenchWarmWalk runs the warm walk measure alone (NARFS_BENCH=1,
// NARFS_BENCH_RUNS as for TestBenchReport) and prints its row.
func TestBenchWarmWalk(t *testing.T) {
	if os.Getenv("NARFS_BENCH") != "1" {
		t.Skip("set NARFS_BENCH=1 (make bench)")
	}
	requireE2E(t)
	b := newBench(t, false)
	b.warmWalk()
	for _, r := range b.stockRows {
		fmt.Printf("| %s | %s | %s | %s | %s | %s | %s | %s |\n", r.num, r.measure, r.narfs, r.reference, r.result, r.target, r.met, r.amp)
	}
}

// warmWalkOps are the FUSE operations narfs counts that a warm walk can
// still cost (the kernel answers the rest from its caches).
var warmWalkOps = []string{"lookup", "getattr", "opendir", "readdir", "open", "read", "release", "readlink"}

// warmWalk: a warm `tar` of the Go toolchain path (idxLoadOrBuild's, from
// the stock `nix copy` zstd cache) through the mount, everything read once
// before and the page cache hot, against the same tar of /nix/store: the
// cost of what every file still takes through FUSE (an OPEN and a RELEASE
// each, an OPENDIR per directory) when its bytes come from the page
// cache. Runs alternate, each timed tar right after an untimed one of the
// same tree, so that a cache drop elsewhere on the machine is undone
// before it counts, and redone when caches were dropped during it. The FUSE operations per
// file of the timed runs come from the daemon's metrics. The tar is piped to cat: GNU tar does not
// read files it writes to /dev/null.
// Row 18n is the same walk with --no-open, where the kernel sends neither.
func (b *bench) warmWalk() {
	b.warmWalkMode("18", "")
	b.warmWalkMode("18n", "--no-open")
}

func (b *bench) warmWalkMode(num, flag string) {
	t := b.t
	w := b.idxWorkload()
	stock := serveCounting(t, w.Stock)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cache := b.scratch()
	defer os.RemoveAll(cache)
	args := []string{"--metrics-listen", addr}
	how := "through the mount"
	if flag != "" {
		args = append(args, flag)
		how = "through a `" + flag + "` mount"
	}
	m := benchMount(t, stock.URL, w.PublicKey, cache, nil, true, args...)
	tarOf := func(dir string) string {
		return fmt.Sprintf("tar -C '%s' -cf - '%s' | cat >/dev/null", dir, w.Go)
	}
	mounted, native := tarOf(m.Dir), tarOf("/nix/store")
	timed(t, mounted)                // fetches the NAR and fills the page cache
	opsTotal := map[string]float64{} // by op, over the timed runs
	var narfsT, nativeT []time.Duration
	redone := 0
	// warmRun times script right after an untimed run of it, again while
	// the kernel's caches were dropped in between (by anything on the
	// machine: another benchmark's dropCaches), up to 5 times a run.
	warmRun := func(script string, each func()) time.Duration {
		for try := 0; ; try++ {
			timed(t, script)
			d0 := cacheDrops(t)
			if each != nil {
				each()
			}
			d := timed(t, script)
			if cacheDrops(t) == d0 || try == 5 {
				return d
			}
			redone++
		}
	}
	for range b.runs {
		var s0 map[string]float64
		narfsT = append(narfsT, warmRun(mounted, func() { s0, _ = scrapeMetrics(t, addr) }))
		s1, _ := scrapeMetrics(t, addr)
		for _, op := range warmWalkOps {
			k := `op="` + op + `"`
			opsTotal[op] += sum(s1, "narfs_fuse_operations_total", k) - sum(s0, "narfs_fuse_operations_total", k)
		}
		nativeT = append(nativeT, warmRun(native, nil))
	}
	m.stop(t)
	files := countFiles(t, "/nix/store/"+w.Go)
	var ops []string
	for _, op := range warmWalkOps {
		if n := opsTotal[op] / float64(b.runs); n > 0 {
			ops = append(ops, fmt.Sprintf("%s %.2f", op, n/float64(files)))
		}
	}
	r := ratio(median(narfsT), median(nativeT))
	b.addStock(benchRow{num, fmt.Sprintf("Warm walk: `tar` of the Go toolchain (%d files, stock zstd cache, fetched and read once before, page cache hot) %s vs /nix/store (%d runs each, alternating)", files, how, b.runs),
		secs(median(narfsT)), "native " + secs(median(nativeT)), fmt.Sprintf("%.2f×", r), "≤ 3×", verdict(r <= 3),
		fmt.Sprintf("FUSE ops per file of a timed walk: %s (%d runs redone after a cache drop)", strings.Join(ops, ", "), redone)})
}

// cacheDrops is how often the kernel's caches were dropped since boot
// (drop_caches writes, by anyone).
func cacheDrops(t testing.TB) string {
	t.Helper()
	data, err := os.ReadFile("/proc/vmstat")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "drop_") {
			out = append(out, l)
		}
	}
	return strings.Join(out, " ")
}
