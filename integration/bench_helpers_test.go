package integration

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// countingCache serves a cache directory on 127.0.0.1 and counts GETs and
// response body bytes by key, so amplification can be measured for narfs
// and Nix alike.
type countingCache struct {
	URL   string
	mu    sync.Mutex
	gets  map[string]int
	bytes map[string]int64
}

func serveCounting(t testing.TB, dir string) *countingCache {
	t.Helper()
	c := &countingCache{gets: map[string]int{}, bytes: map[string]int64{}}
	files := http.FileServer(http.Dir(dir))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := strings.TrimPrefix(r.URL.Path, "/")
		cw := &countingWriter{ResponseWriter: w}
		files.ServeHTTP(cw, r)
		c.mu.Lock()
		c.gets[key]++
		c.bytes[key] += cw.n
		c.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	c.URL = srv.URL
	return c
}

// countingWriter hides io.ReaderFrom so every body byte passes Write.
type countingWriter struct {
	http.ResponseWriter
	n int64
}

func (w *countingWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	w.n += int64(n)
	return n, err
}

// traffic is a snapshot of what a countingCache served.
type traffic struct {
	gets     map[string]int
	bytes    map[string]int64
	narBytes int64 // bytes of nar/ objects
	allBytes int64
}

func (c *countingCache) snapshot() traffic {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := traffic{gets: map[string]int{}, bytes: map[string]int64{}}
	for k, v := range c.gets {
		s.gets[k] = v
	}
	for k, v := range c.bytes {
		s.bytes[k] = v
		s.allBytes += v
		if strings.HasPrefix(k, "nar/") {
			s.narBytes += v
		}
	}
	return s
}

// since is the traffic between an earlier snapshot and now.
func (c *countingCache) since(before traffic) traffic {
	now := c.snapshot()
	d := traffic{gets: map[string]int{}, bytes: map[string]int64{}}
	for k, v := range now.gets {
		if n := v - before.gets[k]; n != 0 {
			d.gets[k] = n
		}
	}
	for k, v := range now.bytes {
		d.bytes[k] = v - before.bytes[k]
	}
	d.narBytes = now.narBytes - before.narBytes
	d.allBytes = now.allBytes - before.allBytes
	return d
}

// benchDaemon is one `narfs mount` of the benchmark, stopped explicitly so
// its counters and peak RSS can be read.
type benchDaemon struct {
	*mounted
	stopped bool
}

// daemonStats is what one daemon reported on exit.
type daemonStats struct {
	NarGets, NarinfoGets, UpstreamBytes int64
	HWM                                 int64 // VmHWM in bytes just before exit
}

var (
	benchBinOnce sync.Once
	benchBinPath string
	benchBinErr  error
	peakRSSMu    sync.Mutex
	peakRSS      int64 // highest VmHWM of any daemon in this run
)

// benchBinary is a narfs built without -race (TestMain's binary has it):
// NARFS_BENCH_BIN if set (make bench passes bin/narfs), else a fresh build.
func benchBinary(t testing.TB) string {
	benchBinOnce.Do(func() {
		if p := os.Getenv("NARFS_BENCH_BIN"); p != "" {
			benchBinPath, benchBinErr = filepath.Abs(p)
			return
		}
		dir, err := os.MkdirTemp("", "narfs-bench-bin-")
		if err != nil {
			benchBinErr = err
			return
		}
		benchBinPath = filepath.Join(dir, "narfs")
		benchBinErr = exec.Command("go", "build", "-o", benchBinPath, "github.com/narfs/narfs/cmd/narfs").Run()
	})
	if benchBinErr != nil {
		t.Fatalf("building narfs for the benchmark: %v", benchBinErr)
	}
	return benchBinPath
}

// benchMount mounts url with a given cache directory (empty: a fresh one)
// and extra flags.
func benchMount(t testing.TB, url, key, cacheDir string, env []string, passthrough bool, extra ...string) *benchDaemon {
	t.Helper()
	if cacheDir == "" {
		cacheDir = t.TempDir()
	}
	args := append([]string{"--cache-dir", cacheDir, "--log-level", "info",
		"--trusted-public-keys", key, "--passthrough=" + strconv.FormatBool(passthrough)}, extra...)
	d := &benchDaemon{mounted: startMount(t, benchBinary(t), url, env, args...)}
	t.Cleanup(func() {
		if !d.stopped {
			d.stop(t)
		}
	})
	return d
}

// hwm reads the daemon's VmHWM in bytes.
func (d *benchDaemon) hwm(t testing.TB) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.cmd.Process.Pid))
	if err != nil {
		t.Fatalf("reading daemon status: %v", err)
	}
	m := regexp.MustCompile(`VmHWM:\s+(\d+) kB`).FindSubmatch(data)
	if m == nil {
		t.Fatalf("no VmHWM in /proc/%d/status", d.cmd.Process.Pid)
	}
	n, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return n << 10
}

// resetHWM makes VmHWM start again from the current RSS.
func (d *benchDaemon) resetHWM(t testing.TB) {
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", d.cmd.Process.Pid), []byte("5"), 0); err != nil {
		t.Fatalf("clear_refs: %v", err)
	}
}

// stop unmounts (SIGTERM) and returns the daemon's own counters.
func (d *benchDaemon) stop(t testing.TB) daemonStats {
	t.Helper()
	d.stopped = true
	st := daemonStats{HWM: d.hwm(t)}
	peakRSSMu.Lock()
	peakRSS = max(peakRSS, st.HWM)
	peakRSSMu.Unlock()
	d.mounted.stop(t)
	log := d.Log()
	for _, f := range []struct {
		name string
		dst  *int64
	}{{"nar_gets", &st.NarGets}, {"narinfo_gets", &st.NarinfoGets}, {"upstream_bytes", &st.UpstreamBytes}} {
		if m := regexp.MustCompile(`msg=unmounted .*\b` + f.name + `=(\d+)`).FindStringSubmatch(log); m != nil {
			*f.dst, _ = strconv.ParseInt(m[1], 10, 64)
		}
	}
	if strings.Contains(log, "level=ERROR") {
		t.Errorf("the daemon logged errors:\n%s", log)
	}
	return st
}

// dropCaches empties the kernel page, dentry and inode caches so cold
// reads come from the disk for narfs and for the native tree alike.
func dropCaches(t testing.TB) {
	t.Helper()
	syscall.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0); err != nil {
		t.Fatalf("drop_caches: %v", err)
	}
}

// timed runs a shell command line in a separate process and returns its
// wall time; a failure fails the test.
func timed(t testing.TB, script string) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", "set -eo pipefail; "+script)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	if err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out.String())
	}
	return d
}

// median of a sample (the sample is sorted in place).
func median[T int64 | float64 | time.Duration](xs []T) T {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	if len(xs)%2 == 1 {
		return xs[len(xs)/2]
	}
	return (xs[len(xs)/2-1] + xs[len(xs)/2]) / 2
}
