package integration

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/remote/narinfo"
	"github.com/narfs/narfs/remote/storepath"
)

// Measure 21: memory of the daemon front end (`narfs mount
// --nix-daemon-socket`) while 32 concurrent protocol clients query 10,000
// store paths, each asking QueryPathInfo of every path, IsValidPath of
// every tenth and QueryValidPaths of all of them in batches of 500 (with
// absent paths mixed in), twice: a cold round (every narinfo read from
// the cache) and a warm one (the same questions again, answered from
// memory). Every answer is checked against the signed narinfo.
//
// The bound it is held to, derived from the code (remote.Store's narinfo
// LRU and lookahead queue, remote/nixdaemon's connections):
//
//	live heap added = min(paths, NarinfoCacheSize) × daemonEntryBytes      the narinfo LRU and the lookahead's keys
//	                + clients × (64 KiB + (batch + absent) × 128 B)         bufio reader and writer; a QueryValidPaths request and reply
//	RSS ≤ 2 × RSS before the queries + 2 × live heap added                  the Go heap grows to twice its live size (GOGC=100)
//	      + clients × (1 + Server.Jobs) × 8 KiB                            goroutine stacks: a connection and its lookups
//
// Beyond NarinfoCacheSize (65,536) paths the first term stops growing:
// both LRUs evict (remote/lookahead_bound_test.go).
const (
	daemonBenchPaths   = 10000
	daemonBenchClients = 32
	daemonBenchBatch   = 500
	daemonBenchAbsent  = 10 // absent paths per QueryValidPaths batch
	// daemonEntryBytes is one narinfo of this workload in memory: the
	// golang-lru entry and map slot (≈ 150 B), remote.PathInfo (80 B),
	// narinfo.NarInfo (288 B) and its strings — store path, URL, two
	// hashes, one reference, one signature (≈ 600 B) — and the lookahead
	// queue's key for its reference (≈ 200 B): ≈ 1.3 KiB, which is also
	// what the live heap grows by per path (GODEBUG=gctrace=1), taken as
	// 1.5 KiB.
	daemonEntryBytes = 1536
	// narinfoCacheSize is remote.Config's default NarinfoCacheSize.
	narinfoCacheSize = 65536
	// daemonJobs is nixdaemon.Server's default Jobs.
	daemonJobs = 16
)

// daemonBenchPath is one synthetic store path and what the daemon must
// report of it.
type daemonBenchPath struct {
	path, narHash, ref, sig string
	narSize                 uint64
}

// makeDaemonCache writes a file:// cache of n tiny signed paths (one
// file each; each path but the first refers to the previous one) into
// dir, signed by narfs-test-1 (nar/testdata/keys).
func makeDaemonCache(t testing.TB, dir string, n int) []daemonBenchPath {
	t.Helper()
	skData, err := os.ReadFile("../nar/testdata/keys/narfs-test-1.sk")
	if err != nil {
		t.Fatal(err)
	}
	sk, err := narinfo.ParseSecretKey(strings.TrimSpace(string(skData)))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "nar"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "nix-cache-info"), []byte("StoreDir: /nix/store\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	paths := make([]daemonBenchPath, n)
	var prev storepath.StorePath
	for i := range paths {
		seed := sha256.Sum256([]byte(fmt.Sprintf("narfs-bench-daemon-%d", i)))
		sp, err := storepath.Parse(storepath.EncodeNix32(seed[:20]) + fmt.Sprintf("-bench-daemon-%05d", i))
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		w := nar.NewWriter(&buf)
		contents := fmt.Sprintf("daemon benchmark path %d\n", i)
		w.File(false, int64(len(contents)), strings.NewReader(contents))
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(buf.Bytes())
		h := storepath.Hash{Algo: "sha256", Digest: sum[:]}
		url := "nar/" + storepath.EncodeNix32(sum[:]) + ".nar"
		ni := &narinfo.NarInfo{StorePath: sp, URL: url, Compression: "none", FileHash: &h, FileSize: int64(buf.Len()),
			NarHash: h, NarSize: int64(buf.Len())}
		p := daemonBenchPath{path: sp.Abs("/nix/store"), narHash: hex.EncodeToString(sum[:]), narSize: uint64(buf.Len())}
		if i > 0 {
			ni.References = []storepath.StorePath{prev}
			p.ref = prev.Abs("/nix/store")
		}
		if p.sig, err = sk.Sign(ni); err != nil {
			t.Fatal(err)
		}
		ni.Sigs = []string{p.sig}
		if err := os.WriteFile(filepath.Join(dir, url), buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, sp.Hash+".narinfo"), ni.Marshal(), 0o644); err != nil {
			t.Fatal(err)
		}
		paths[i], prev = p, sp
	}
	return paths
}

// check compares a QueryPathInfo answer with the signed narinfo.
func (p daemonBenchPath) check(info *daemonPathInfo) error {
	var refs []string
	if p.ref != "" {
		refs = []string{p.ref}
	}
	if info == nil || info.NarHash != p.narHash || info.NarSize != p.narSize ||
		!slices.Equal(info.References, refs) || !slices.Equal(info.Sigs, []string{p.sig}) || info.CA != "" {
		return fmt.Errorf("%s: QueryPathInfo answered %+v", p.path, info)
	}
	return nil
}

// daemonRound runs every client's queries once; it returns the requests
// made and the first wrong answer or error.
func daemonRound(clients []*daemonClient, paths []daemonBenchPath) (int64, error) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var requests int64
	var firstErr error
	for ci, dc := range clients {
		wg.Go(func() {
			n, err := daemonClientRound(dc, ci, paths)
			mu.Lock()
			defer mu.Unlock()
			requests += n
			if err != nil && firstErr == nil {
				firstErr = fmt.Errorf("client %d: %w", ci, err)
			}
		})
	}
	wg.Wait()
	return requests, firstErr
}

// daemonClientRound is one client's queries, starting at a different
// offset per client so the clients do not move in lockstep.
func daemonClientRound(dc *daemonClient, ci int, paths []daemonBenchPath) (int64, error) {
	var n int64
	off := ci * len(paths) / daemonBenchClients
	for k := range paths {
		i := (off + k) % len(paths)
		p := paths[i]
		info, err := dc.queryPathInfo(p.path)
		n++
		if err != nil {
			return n, fmt.Errorf("%s: %w", p.path, err)
		}
		if err := p.check(info); err != nil {
			return n, err
		}
		if i%10 == 0 {
			ok, err := dc.isValidPath(p.path)
			n++
			if err != nil || !ok {
				return n, fmt.Errorf("IsValidPath(%s) = %v, %v", p.path, ok, err)
			}
		}
	}
	for start := 0; start < len(paths); start += daemonBenchBatch {
		var batch, want []string
		for _, p := range paths[start:min(start+daemonBenchBatch, len(paths))] {
			batch = append(batch, p.path)
			want = append(want, p.path)
		}
		for j := range daemonBenchAbsent {
			// Valid names no cache has: answered by a miss, then by the
			// negative cache.
			seed := sha256.Sum256([]byte(fmt.Sprintf("absent-%d-%d", start, j)))
			batch = append(batch, "/nix/store/"+storepath.EncodeNix32(seed[:20])+"-absent")
		}
		got, err := dc.queryValidPaths(batch)
		n++
		if err != nil {
			return n, fmt.Errorf("QueryValidPaths: %w", err)
		}
		slices.Sort(want)
		if !slices.Equal(got, want) {
			return n, fmt.Errorf("QueryValidPaths of %d paths (%d absent) answered %d paths", len(batch), daemonBenchAbsent, len(got))
		}
	}
	return n, nil
}

// procStatus reads a "<field>: N kB" line of /proc/PID/status in bytes.
func procStatus(t testing.TB, pid int, field string) int64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("reading daemon status: %v", err)
	}
	m := regexp.MustCompile(field + `:\s+(\d+) kB`).FindSubmatch(data)
	if m == nil {
		t.Fatalf("no %s in /proc/%d/status", field, pid)
	}
	v, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return v << 10
}

// daemonMemory is measure 21.
func (b *bench) daemonMemory() {
	t := b.t
	cache := b.scratch()
	defer os.RemoveAll(cache)
	start := time.Now()
	paths := makeDaemonCache(t, cache, daemonBenchPaths)
	t.Logf("daemon bench: %d signed paths written in %v", len(paths), time.Since(start).Round(time.Millisecond))
	sockDir, err := os.MkdirTemp("", "nd")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(sockDir)
	sock := filepath.Join(sockDir, "s")
	cacheDir := b.scratch()
	defer os.RemoveAll(cacheDir)
	m := benchMount(t, "file://"+cache, testPublicKey(t), cacheDir, []string{"NARFS_NIX_DAEMON_SOCKET=" + sock}, true)
	pid := m.cmd.Process.Pid

	var clients []*daemonClient
	deadline := time.Now().Add(30 * time.Second)
	for len(clients) < daemonBenchClients {
		dc, err := dialDaemon(sock, 30*time.Second)
		if err != nil {
			if time.Now().After(deadline) {
				t.Fatalf("daemon socket: %v\n%s", err, m.Log())
			}
			time.Sleep(20 * time.Millisecond)
			continue
		}
		defer dc.Close()
		clients = append(clients, dc)
	}
	base := procStatus(t, pid, "VmRSS")
	hwmBefore := m.hwm(t)
	m.resetHWM(t)

	type round struct {
		d        time.Duration
		requests int64
		hwm, rss int64
	}
	var rounds [2]round
	for i := range rounds {
		if i > 0 {
			m.resetHWM(t)
		}
		start := time.Now()
		n, err := daemonRound(clients, paths)
		rounds[i] = round{time.Since(start), n, m.hwm(t), procStatus(t, pid, "VmRSS")}
		if err != nil {
			t.Fatalf("round %d: %v\n%s", i+1, err, m.Log())
		}
		t.Logf("daemon bench round %d: %d requests in %v; VmHWM %s, VmRSS %s", i+1, n, rounds[i].d.Round(time.Millisecond), mib(rounds[i].hwm), mib(rounds[i].rss))
	}
	for _, dc := range clients {
		dc.Close()
	}
	st := m.stop(t)

	added := int64(min(daemonBenchPaths, narinfoCacheSize))*daemonEntryBytes +
		daemonBenchClients*(64<<10+(daemonBenchBatch+daemonBenchAbsent)*128)
	bound := 2*base + 2*added + daemonBenchClients*(1+daemonJobs)*8<<10
	peak := max(rounds[0].hwm, rounds[1].hwm)
	// A leak would show as the warm round's peak well above the cold
	// one's (the same questions, all answered from memory).
	steady := rounds[1].hwm <= rounds[0].hwm+8<<20
	rps := func(r round) string { return fmt.Sprintf("%.0f req/s", float64(r.requests)/r.d.Seconds()) }
	b.daemonIntro = fmt.Sprintf("The daemon front end (`narfs mount --nix-daemon-socket`, README: Builds on narfs) over a file:// cache of %d tiny signed "+
		"store paths (each refers to the previous one), %d concurrent protocol clients (Go, protocol 1.38) each asking QueryPathInfo of every path, "+
		"IsValidPath of every tenth and QueryValidPaths of all in batches of %d (plus %d absent paths each); every answer checked against the "+
		"signed narinfo. Two rounds on the same connections: cold (narinfos read from the cache: %d narinfo reads) then warm. "+
		"VmHWM reset with clear_refs before each round. Bound, from the code: 2 × RSS before the queries + 2 (the Go heap grows to twice "+
		"its live size, GOGC=100) × (min(paths, NarinfoCacheSize %d) × %.1f KiB per cached narinfo and lookahead key + %d connections × "+
		"(64 KiB of buffers + %d paths of a QueryValidPaths request and reply × 128 B)) + %d × %d goroutine stacks of 8 KiB = %s.\n\n",
		daemonBenchPaths, daemonBenchClients, daemonBenchBatch, daemonBenchAbsent, st.NarinfoGets, narinfoCacheSize, float64(daemonEntryBytes)/1024,
		daemonBenchClients, daemonBenchBatch+daemonBenchAbsent, daemonBenchClients, 1+daemonJobs, mib(bound))
	b.daemonRows = append(b.daemonRows, benchRow{"21",
		fmt.Sprintf("Memory of the daemon front end, %d clients × %d paths: VmHWM cold / warm round (RSS at the end)", daemonBenchClients, daemonBenchPaths),
		fmt.Sprintf("%s / %s (RSS %s; before the queries: RSS %s, VmHWM %s)", mib(rounds[0].hwm), mib(rounds[1].hwm), mib(rounds[1].rss), mib(base), mib(hwmBefore)),
		fmt.Sprintf("bound %s", mib(bound)),
		fmt.Sprintf("cold %s, warm %s (%d requests a round)", rps(rounds[0]), rps(rounds[1]), rounds[0].requests),
		"VmHWM ≤ bound; warm ≤ cold + 8 MiB", verdict(peak <= bound && steady), ""})
}
