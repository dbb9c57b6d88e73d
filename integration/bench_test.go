package integration

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestBenchReport is `make bench`: narfs against real Nix substitution and
// the native disk on one workload, every figure a ratio or count from the
// same run, medians of NARFS_BENCH_RUNS (default 5) runs. It prints a
// markdown table and writes it to NARFS_BENCH_OUT when set.
// NARFS_BENCH_ONLY=indexed runs only the indexed-cache measures (10–14),
// =stock only 15, 17 and 18, =closure only 1, 3 and 16 (the cold closure);
// NARFS_BENCH_COMPRESSIONS=zstd,xz limits the caches of the last;
// =builds only 19 and 20 (builds on narfs, bench_builds_test.go); =daemon
// only 21 (the daemon front end's memory, bench_daemon_test.go).
func TestBenchReport(t *testing.T) {
	if os.Getenv("NARFS_BENCH") != "1" {
		t.Skip("set NARFS_BENCH=1 (make bench)")
	}
	requireE2E(t)
	only := os.Getenv("NARFS_BENCH_ONLY")
	switch only {
	case "", "indexed", "stock", "closure", "builds", "daemon":
	default:
		t.Fatalf("NARFS_BENCH_ONLY=%q: want indexed, stock, closure, builds, daemon or nothing", only)
	}
	b := newBench(t, only == "" || only == "closure")
	if only == "builds" {
		b.builds() // measures 19 and 20
	}
	if only == "daemon" {
		b.daemonMemory() // measure 21
	}
	if only == "closure" {
		b.coldReadsAndClosure()
	}
	if only == "" {
		b.coldReadsAndClosure()  // measures 1, 3 (and 9)
		b.coldMetadata()         // measure 2
		b.streamingAndWarmRead() // measures 7 (streaming) and 4
		b.warmMetadata()         // measure 5
		b.concurrency()          // measure 6
		b.memoryOverall()        // measure 7 (whole run)
		b.decoders()             // measure 8
	}
	if only != "stock" && only != "closure" && only != "builds" && only != "daemon" {
		b.indexed() // measures 10–14
	}
	if only != "indexed" && only != "closure" && only != "builds" && only != "daemon" {
		b.stock() // measures 15, 17 and 18
	}
	if only == "" {
		b.builds()       // measures 19 and 20
		b.daemonMemory() // measure 21
	}
	report := b.table()
	fmt.Println(report)
	if out := os.Getenv("NARFS_BENCH_OUT"); out != "" {
		if err := os.WriteFile(out, []byte(report), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

type bench struct {
	t       *testing.T
	w       *workload
	runs    int
	http    map[string]*countingCache // compression → server
	s3      map[string]string         // compression → s3:// URL
	s3env   []string
	tmp     string                     // scratch on the same disk as the caches
	native  string                     // a Nix-extracted copy of the closure (…/nix/store)
	nixCopy map[string][]time.Duration // compression → nix copy of the closure
	rows    []benchRow

	idx      *idxWorkload // measures 10–15, 17 (bench_indexed_test.go)
	idxIntro string
	idxRows  []benchRow

	stockIntro string // measures 15, 17 and 18 (bench_stock_test.go, bench_walk_test.go)
	stockRows  []benchRow

	buildIntro string // measures 19 and 20 (bench_builds_test.go)
	buildRows  []benchRow

	daemonIntro string // measure 21 (bench_daemon_test.go)
	daemonRows  []benchRow
}

type benchRow struct {
	num, measure, narfs, reference, result, target, met, amp string
}

// newBench reads NARFS_BENCH_RUNS and, for the measures 1–9 (full), makes
// the workload and its servers.
func newBench(t *testing.T, full bool) *bench {
	b := &bench{t: t, runs: 5, http: map[string]*countingCache{}, s3: map[string]string{}, nixCopy: map[string][]time.Duration{}}
	if v := os.Getenv("NARFS_BENCH_RUNS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("NARFS_BENCH_RUNS=%q", v)
		}
		b.runs = n
	}
	benchBinary(t)
	if full {
		b.w = benchWorkload(t)
		s3 := startS3(t)
		b.s3env = s3.env()
		for _, c := range benchCompressions {
			b.http[c.name] = serveCounting(t, b.w.Caches[c.name])
			b.s3[c.name] = s3.bucket(t, "bench-"+c.name, b.w.Caches[c.name])
		}
	}
	if err := os.MkdirAll(benchRoot, 0o755); err != nil {
		t.Fatal(err)
	}
	var err error
	if b.tmp, err = os.MkdirTemp(benchRoot, "run-"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(b.tmp) })
	return b
}

// scratch is a fresh directory the caller removes (cache dirs and Nix
// roots are hundreds of MB each; they must not pile up until the end).
func (b *bench) scratch() string {
	d, err := os.MkdirTemp(b.tmp, "")
	if err != nil {
		b.t.Fatal(err)
	}
	return d
}

func (b *bench) add(r benchRow) { b.rows = append(b.rows, r) }

// nixCopyClosure times `nix copy` of the whole closure into a fresh root.
func (b *bench) nixCopyClosure(url, root string) time.Duration {
	return timed(b.t, nixCopyScript(url, b.w.PublicKey, root, b.w.Root))
}

// tarAll is `tar c` of every path of the closure under dir, root first
// (the order a closure is discovered in), to a pipe so GNU tar cannot skip
// reading (it does when writing to /dev/null).
func (b *bench) tarAll(dir string) string {
	paths := slices.Clone(b.w.All)
	slices.Reverse(paths) // nix-store -qR lists dependencies first
	return fmt.Sprintf("tar -C '%s' -cf - %s | cat >/dev/null", dir, strings.Join(paths, " "))
}

// coldReadsAndClosure: measure 1 (first byte of a small file whose closure
// is the whole workload), measure 3 (tar of the whole closure) and measure
// 16 (`narfs prefetch --closure`), narfs cold against `nix copy` of the
// closure, on every link of benchProfiles (narfs and Nix through the same
// proxy). On loopback narfs also reads from s3 (versitygw) and without
// passthrough. Each run is a fresh mount, a fresh cache dir and an empty
// page cache; the contenders alternate so drift hits them alike. For zstd
// on loopback, a warm tar through the mount and a tar of Nix's extracted
// tree show how much of measure 3 is FUSE rather than fetching.
func (b *bench) coldReadsAndClosure() {
	t := b.t
	type contender struct {
		name        string
		s3          bool
		passthrough bool
		extra       []string
		shaped      bool // run on shaped links too
	}
	contenders := []contender{
		{"http", false, true, nil, true},
		{"s3", true, true, nil, false},
		{"prefetch", false, true, []string{"--prefetch-references"}, true},
		{"nopt", false, false, nil, false},                                             // measure 3 only: passthrough's cost on many small files
		{"noopen", false, true, []string{"--no-open", "--prefetch-references"}, false}, // measure 3 only: no OPEN/RELEASE per file
	}
	profiles := benchProfiles(t)
	smallSize := fileSize(t, "/nix/store/"+b.w.SmallFile)
	for _, c := range benchCompressions {
		if v := os.Getenv("NARFS_BENCH_COMPRESSIONS"); v != "" && !slices.Contains(strings.Split(v, ","), c.name) {
			continue
		}
		srv := b.http[c.name]
		links := linksTo(t, srv.URL, profiles)
		all := map[string]*closureSamples{}
		for _, l := range links {
			all[l.name] = &closureSamples{first: map[string][]time.Duration{}, tar: map[string][]time.Duration{},
				firstAmp: map[string][]float64{}, tarAmp: map[string][]float64{}}
		}
		for i := range b.runs {
			for _, l := range links {
				s := all[l.name]
				root := b.scratch()
				dropCaches(t)
				before := srv.snapshot()
				s.nix = append(s.nix, b.nixCopyClosure(l.url, root))
				s.nixAmp = append(s.nixAmp, float64(srv.since(before).allBytes)/float64(b.w.FileBytes))
				for _, k := range contenders {
					if l.shaped() && !k.shaped {
						continue
					}
					url, env := l.url, []string(nil)
					if k.s3 {
						url, env = b.s3[c.name], b.s3env
					}
					if k.name != "nopt" && k.name != "noopen" {
						// Measure 1.
						cache := b.scratch()
						m := benchMount(t, url, b.w.PublicKey, cache, env, k.passthrough, k.extra...)
						dropCaches(t)
						before := srv.snapshot()
						d := timed(t, fmt.Sprintf("cat '%s/%s' >/dev/null", m.Dir, b.w.SmallFile))
						s.startup = append(s.startup, m.startup)
						fetched := float64(srv.since(before).allBytes)
						st := m.stop(t)
						if k.s3 {
							fetched = float64(st.UpstreamBytes)
						}
						s.first[k.name], s.firstAmp[k.name] = append(s.first[k.name], d), append(s.firstAmp[k.name], fetched/float64(smallSize))
						os.RemoveAll(cache)
					}
					// Measure 3.
					cache := b.scratch()
					m := benchMount(t, url, b.w.PublicKey, cache, env, k.passthrough, k.extra...)
					dropCaches(t)
					before := srv.snapshot()
					d := timed(t, b.tarAll(m.Dir))
					fetched := float64(srv.since(before).allBytes)
					if c.name == "zstd" && k.name == "http" && !l.shaped() {
						native := filepath.Join(root, "nix", "store")
						timed(t, b.tarAll(m.Dir)) // both sides' files in the page cache
						timed(t, b.tarAll(native))
						s.hot = append(s.hot, timed(t, b.tarAll(m.Dir)))
						s.nativeHot = append(s.nativeHot, timed(t, b.tarAll(native)))
						dropCaches(t)
						s.warm = append(s.warm, timed(t, b.tarAll(m.Dir)))
						dropCaches(t)
						s.native = append(s.native, timed(t, b.tarAll(native)))
					}
					st := m.stop(t)
					if k.s3 {
						fetched = float64(st.UpstreamBytes)
					}
					s.tar[k.name], s.tarAmp[k.name] = append(s.tar[k.name], d), append(s.tarAmp[k.name], fetched/float64(b.w.FileBytes))
					os.RemoveAll(cache)
				}
				// Measure 16: narfs prefetch --closure, then a mount of its
				// cache dir reads the closure with no NAR request.
				cache := b.scratch()
				dropCaches(t)
				s.pf = append(s.pf, timed(t, fmt.Sprintf("'%s' prefetch --closure --cache-dir '%s' --trusted-public-keys '%s' --log-level warn '%s' /nix/store/%s >/dev/null",
					benchBinary(t), cache, b.w.PublicKey, l.url, b.w.Root)))
				m := benchMount(t, l.url, b.w.PublicKey, cache, nil, true)
				before = srv.snapshot()
				timed(t, b.tarAll(m.Dir))
				s.pfNarGets = append(s.pfNarGets, int64(narGets(srv.since(before))))
				m.stop(t)
				os.RemoveAll(cache)

				if c.name == "zstd" && !l.shaped() && i == b.runs-1 {
					b.native = filepath.Join(root, "nix", "store")
				} else {
					os.RemoveAll(root)
				}
			}
		}
		for _, l := range links {
			s := all[l.name]
			b.closureRows(c.name, l, s, smallSize)
			if c.name == "zstd" && !l.shaped() {
				b.add(benchRow{"3w", "Diagnostic: the same `tar c`, warm (NARs fetched), through the mount vs on Nix's extracted tree; page cache hot, then dropped",
					fmt.Sprintf("hot %s, dropped %s", secs(median(s.hot)), secs(median(s.warm))),
					fmt.Sprintf("native hot %s, dropped %s", secs(median(s.nativeHot)), secs(median(s.native))),
					fmt.Sprintf("hot %.2f, dropped %.2f", ratio(median(s.hot), median(s.nativeHot)), ratio(median(s.warm), median(s.native))), "(reported)", "", "0 (warm)"})
			}
			rp := ratio(median(s.pf), median(s.nix))
			b.add(benchRow{"16", fmt.Sprintf("`narfs prefetch --closure` (%s, %s) of the %d paths vs `nix copy` of them; then a mount of its cache dir reads them all", c.name, l.name, len(b.w.All)),
				fmt.Sprintf("%s; NAR requests of the tar after it: %d (max of runs %d)", secs(median(s.pf)), median(s.pfNarGets), slicesMax(s.pfNarGets)),
				"nix copy " + secs(median(s.nix)), fmt.Sprintf("%.2f", rp), "≤ 1.0, then 0 NAR requests",
				verdict(rp <= 1.0 && slicesMax(s.pfNarGets) == 0), ""})
		}
		if l := links[0]; !l.shaped() {
			b.nixCopy[c.name] = all[l.name].nix
		}
	}
}

// closureSamples are the figures of measures 1, 3 and 16 on one link.
type closureSamples struct {
	nix, warm, native, hot, nativeHot, startup, pf []time.Duration
	nixAmp                                         []float64
	first, tar                                     map[string][]time.Duration // by contender
	firstAmp, tarAmp                               map[string][]float64
	pfNarGets                                      []int64
}

// closureRows adds measures 1 and 3 of one compression on one link.
func (b *bench) closureRows(comp string, l benchLink, s *closureSamples, smallSize int64) {
	nix := median(s.nix)
	first, tar, firstAmp, tarAmp, nixAmp, startup := s.first, s.tar, s.firstAmp, s.tarAmp, s.nixAmp, s.startup
	s3 := func(f string, xs map[string][]time.Duration) string {
		if l.shaped() {
			return ""
		}
		return fmt.Sprintf(f, secs(median(xs["s3"])))
	}
	s3r := func(f string, xs map[string][]time.Duration) string {
		if l.shaped() {
			return ""
		}
		return fmt.Sprintf(f, ratio(median(xs["s3"]), nix))
	}
	r1 := ratio(median(first["http"]), nix)
	b.add(benchRow{"1", fmt.Sprintf("First byte, cold (%s, %s): `cat` of root's 21-byte README vs `nix copy` of its closure", comp, l.name),
		fmt.Sprintf("%s%s (--prefetch-references: %s); mount start-up, not included: %s", secs(median(first["http"])), s3("; s3: %s", first), secs(median(first["prefetch"])), secs(median(startup))),
		"nix copy " + secs(nix),
		fmt.Sprintf("%.3f%s", r1, s3r(" (s3: %.3f)", first)), "≤ 0.10", verdict(r1 <= 0.10),
		fmt.Sprintf("narfs %.0f×, Nix %.0f×", median(firstAmp["http"]), median(nixAmp)*float64(b.w.FileBytes)/float64(smallSize))})
	r3, rp := ratio(median(tar["http"]), nix), ratio(median(tar["prefetch"]), nix)
	extra := ""
	if !l.shaped() {
		extra = fmt.Sprintf("; s3: %s, --passthrough=false: %s, --no-open --prefetch-references: %s", secs(median(tar["s3"])), secs(median(tar["nopt"])), secs(median(tar["noopen"])))
	}
	ratios := fmt.Sprintf("%.2f (--prefetch-references: %.2f", r3, rp)
	if !l.shaped() {
		ratios += fmt.Sprintf("; s3: %.2f; no passthrough: %.2f; --no-open --prefetch-references: %.2f", ratio(median(tar["s3"]), nix), ratio(median(tar["nopt"]), nix), ratio(median(tar["noopen"]), nix))
	}
	b.add(benchRow{"3", fmt.Sprintf("Whole closure, cold (%s, %s): `tar c` of %d paths, root first, vs `nix copy`", comp, l.name, len(b.w.All)),
		fmt.Sprintf("%s (--prefetch-references: %s%s)", secs(median(tar["http"])), secs(median(tar["prefetch"])), extra),
		"nix copy " + secs(nix), ratios + ")", "≤ 1.2; --prefetch-references ≤ 0.8",
		fmt.Sprintf("%s (prefetch: %s)", verdict(r3 <= 1.2), verdict(rp <= 0.8)),
		fmt.Sprintf("narfs %.2f (prefetch %.2f), Nix %.2f", median(tarAmp["http"]), median(tarAmp["prefetch"]), median(nixAmp))})
}

// narGets counts the NAR objects a server was asked for.
func narGets(tr traffic) int {
	n := 0
	for k, v := range tr.gets {
		if strings.HasPrefix(k, "nar/") {
			n += v
		}
	}
	return n
}

// coldMetadata: measure 2, `ls -lR` of an unfetched path with a .ls.
func (b *bench) coldMetadata() {
	t := b.t
	srv := b.http["zstd"]
	var narfsT, nixT []time.Duration
	var narBytes, narfsBytes, nixBytes, nixNarBytes []int64
	for range b.runs {
		cache := b.scratch()
		m := benchMount(t, srv.URL, b.w.PublicKey, cache, nil, true)
		dropCaches(t)
		before := srv.snapshot()
		narfsT = append(narfsT, timed(t, fmt.Sprintf("ls -lR '%s/%s' >/dev/null", m.Dir, b.w.ManyFiles)))
		tr := srv.since(before)
		narBytes, narfsBytes = append(narBytes, tr.narBytes), append(narfsBytes, tr.allBytes)
		m.stop(t)
		os.RemoveAll(cache)
		dropCaches(t)
		before = srv.snapshot()
		nixT = append(nixT, timed(t, fmt.Sprintf("nix store ls --long --recursive --store %s --option trusted-public-keys '%s' /nix/store/%s >/dev/null",
			srv.URL, b.w.PublicKey, b.w.ManyFiles)))
		tr = srv.since(before)
		nixBytes, nixNarBytes = append(nixBytes, tr.allBytes), append(nixNarBytes, tr.narBytes)
	}
	r := ratio(median(narfsT), median(nixT))
	b.add(benchRow{"2", fmt.Sprintf("Metadata, cold: `ls -lR` of an unfetched path (%d files) vs `nix store ls -lR`", countFiles(t, "/nix/store/"+b.w.ManyFiles)),
		fmt.Sprintf("%s, NAR bytes fetched: %d (max of runs %d)", secs(median(narfsT)), median(narBytes), slicesMax(narBytes)),
		fmt.Sprintf("%s, NAR bytes %d", secs(median(nixT)), median(nixNarBytes)),
		fmt.Sprintf("time %.2f", r), "0 NAR bytes", verdict(slicesMax(narBytes) == 0),
		fmt.Sprintf("fetched narfs %s, Nix %s (no file content read)", mib(median(narfsBytes)), mib(median(nixBytes)))})
}

// streamingAndWarmRead: measure 7 while streaming the largest NAR (a cold
// read of the big file), then measure 4 on the warm cache dir left behind.
func (b *bench) streamingAndWarmRead() {
	t := b.t
	big := fileSize(t, "/nix/store/"+b.w.BigFile)
	var warmCache string
	for _, c := range []string{"zstd", "xz", "none"} {
		srv := b.http[c]
		var hwm []int64
		var coldT []time.Duration
		for i := range b.runs {
			cache := b.scratch()
			m := benchMount(t, srv.URL, b.w.PublicKey, cache, nil, true)
			dropCaches(t)
			m.resetHWM(t)
			coldT = append(coldT, timed(t, fmt.Sprintf("cat '%s/%s' >/dev/null", m.Dir, b.w.BigFile)))
			hwm = append(hwm, m.hwm(t))
			m.stop(t)
			if c == "zstd" && i == b.runs-1 {
				warmCache = cache
			} else {
				os.RemoveAll(cache)
			}
		}
		b.add(benchRow{"7", fmt.Sprintf("Memory while streaming the largest NAR (%s, %s): VmHWM after clear_refs", c, mib(big)),
			fmt.Sprintf("%s (max %s)", mib(median(hwm)), mib(slicesMax(hwm))), "",
			fmt.Sprintf("cold read %s", rate(big, median(coldT))), "≤ 64 MiB", verdict(slicesMax(hwm) <= 64<<20), ""})
	}
	native := filepath.Join(b.native, b.w.BigFile)
	for _, pt := range []bool{true, false} {
		srv := b.http["zstd"]
		m := benchMount(t, srv.URL, b.w.PublicKey, warmCache, nil, pt)
		// Warm: fetched already (or now). Both files are read once so the
		// host's cache (below this VM's disk) treats them alike.
		timed(t, fmt.Sprintf("cat '%s/%s' >/dev/null", m.Dir, b.w.BigFile))
		timed(t, fmt.Sprintf("cat '%s' >/dev/null", native))
		var narfsT, nativeT []time.Duration
		before := srv.snapshot()
		for range b.runs {
			dropCaches(t)
			narfsT = append(narfsT, timed(t, fmt.Sprintf("cat '%s/%s' >/dev/null", m.Dir, b.w.BigFile)))
			dropCaches(t)
			nativeT = append(nativeT, timed(t, fmt.Sprintf("cat '%s' >/dev/null", native)))
		}
		fetched := srv.since(before).allBytes
		m.stop(t)
		r := ratio(median(nativeT), median(narfsT)) // throughput narfs ÷ native
		target, ok := "≥ 0.9", r >= 0.9
		if !pt {
			target, ok = "(reported)", true
		}
		b.add(benchRow{"4", fmt.Sprintf("Warm read (passthrough %s): `cat` of the %s file, page cache dropped", onOff(pt), mib(big)),
			rate(big, median(narfsT)), "native " + rate(big, median(nativeT)),
			fmt.Sprintf("%.2f", r), target, verdict(ok),
			fmt.Sprintf("%.2f", float64(fetched)/float64(big*int64(b.runs)))})
	}
	os.RemoveAll(warmCache)
}

// warmMetadata: measure 5, `find -ls` of the whole closure, both sides
// traversed once before the timed runs.
func (b *bench) warmMetadata() {
	t := b.t
	srv := b.http["zstd"]
	cache := b.scratch()
	defer os.RemoveAll(cache)
	m := benchMount(t, srv.URL, b.w.PublicKey, cache, nil, true)
	find := func(dir string) string {
		return fmt.Sprintf("cd '%s' && find %s -ls >/dev/null", dir, strings.Join(b.w.All, " "))
	}
	timed(t, find(m.Dir))
	timed(t, find(b.native))
	var narfsT, nativeT []time.Duration
	before := srv.snapshot()
	for range b.runs {
		narfsT = append(narfsT, timed(t, find(m.Dir)))
		nativeT = append(nativeT, timed(t, find(b.native)))
	}
	fetched := srv.since(before).allBytes
	m.stop(t)
	r := ratio(median(narfsT), median(nativeT))
	b.add(benchRow{"5", fmt.Sprintf("Warm metadata: `find -ls` over the closure (%d files)", b.w.Files),
		secs(median(narfsT)), "native " + secs(median(nativeT)), fmt.Sprintf("%.2f", r), "≤ 3.0", verdict(r <= 3.0),
		fmt.Sprintf("%d bytes fetched by the timed runs", fetched)})
}

// concurrency: measure 6, 64 processes reading the same cold file. The
// NAR object may come in parallel ranged parts: one fetch is its bytes
// served exactly once, however many requests carried them.
func (b *bench) concurrency() {
	t := b.t
	srv := b.http["zstd"]
	narKey := narURL(t, b.w.Caches["zstd"], b.w.SharedFile)
	objSize := fileSize(t, filepath.Join(b.w.Caches["zstd"], narKey))
	size := fileSize(t, "/nix/store/"+b.w.SharedFile)
	var oneT, manyT []time.Duration
	var parts []int64
	var fetches, amp []float64
	for range b.runs {
		for _, readers := range []int{1, 64} {
			cache := b.scratch()
			m := benchMount(t, srv.URL, b.w.PublicKey, cache, nil, true)
			dropCaches(t)
			before := srv.snapshot()
			d := timed(t, fmt.Sprintf("pids=(); for i in $(seq %d); do cat '%s/%s' >/dev/null & pids+=($!); done; for p in ${pids[@]}; do wait $p; done",
				readers, m.Dir, b.w.SharedFile))
			tr := srv.since(before)
			m.stop(t)
			os.RemoveAll(cache)
			if readers == 1 {
				oneT = append(oneT, d)
				continue
			}
			manyT = append(manyT, d)
			parts = append(parts, int64(tr.gets[narKey]))
			fetches = append(fetches, float64(tr.bytes[narKey])/float64(objSize))
			amp = append(amp, float64(tr.allBytes)/float64(64*size))
		}
	}
	r := ratio(median(manyT), median(oneT))
	b.add(benchRow{"6", fmt.Sprintf("Concurrency: 64 processes read one cold %s file", mib(size)),
		fmt.Sprintf("NAR object fetched %.2f times (max of runs %.2f), in %d requests (parallel parts); 64 readers %s", median(fetches), slicesMax(fetches), median(parts), secs(median(manyT))),
		"1 reader " + secs(median(oneT)), fmt.Sprintf("time %.2f", r), "exactly 1 fetch", verdict(slicesMin(fetches) == 1 && slicesMax(fetches) == 1),
		fmt.Sprintf("%.3f", median(amp))})
}

func (b *bench) memoryOverall() {
	peakRSSMu.Lock()
	defer peakRSSMu.Unlock()
	b.add(benchRow{"7", "Memory: highest narfs VmHWM over the whole run (every mount above)", mib(peakRSS), "", "", "(reported)", "", ""})
}

// decoders: measure 8 from the output of nar/compress's BenchmarkDecode
// (NARFS_BENCH_DECODE, written by bench.sh): throughput ours ÷ C tool.
func (b *bench) decoders() {
	path := os.Getenv("NARFS_BENCH_DECODE")
	if path == "" {
		b.add(benchRow{"8", "Decoders", "not run (NARFS_BENCH_DECODE unset)", "", "", "", "", ""})
		return
	}
	ns, cpu, err := parseBenchOutput(path)
	if err != nil {
		b.t.Fatalf("decoder benchmarks: %v", err)
	}
	for _, c := range []struct {
		ours, c, tool string
		min           float64
	}{
		{"zstd", "zstd-C", "zstd -dc", 1.0},
		{"xz", "xz-C", "xz -dc", 0.95},
		{"xz-multiblock", "xz-multiblock-C", "xz -T0 -dc", 0.95},
		{"bzip2", "bzip2-C", "bzip2 -dc", 1.0},
		{"bzip2", "bzip2-lbzip2-C", "lbzip2 -dc", 0},
		{"br", "br-C", "brotli -dc", 0.6},
	} {
		o, cn := median(ns[c.ours]), median(ns[c.c])
		if o == 0 || cn == 0 {
			b.add(benchRow{"8", "Decoder " + c.ours + " vs `" + c.tool + "`", "missing", "", "", "", "", ""})
			continue
		}
		r := cn / o
		target, ok := fmt.Sprintf("≥ %.2g×", c.min), r >= c.min
		if c.min == 0 {
			target = "(reported)"
		}
		result := fmt.Sprintf("%.2f×", r)
		if oc, cc := median(cpu[c.ours]), median(cpu[c.c]); oc > 0 && cc > 0 {
			result += fmt.Sprintf(" (CPU time: %.2f×)", cc/oc)
		}
		b.add(benchRow{"8", fmt.Sprintf("Decoder %s (100 MiB NAR) vs `%s`, %d runs", c.ours, c.tool, len(ns[c.ours])),
			rate(100<<20, time.Duration(o)), rate(100<<20, time.Duration(cn)), result, target, verdict(ok), ""})
	}
}

// parseBenchOutput reads `go test -bench` output: sub-benchmark name
// (without the -GOMAXPROCS suffix) → ns/op and cpu-ms/op of every run.
func parseBenchOutput(path string) (ns, cpu map[string][]float64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	re := regexp.MustCompile(`^BenchmarkDecode/(\S+?)(-\d+)?\s+\d+\s+([\d.]+) ns/op`)
	cpuRe := regexp.MustCompile(`\s([\d.]+) cpu-ms/op`)
	ns, cpu = map[string][]float64{}, map[string][]float64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		m := re.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		v, _ := strconv.ParseFloat(m[3], 64)
		ns[m[1]] = append(ns[m[1]], v)
		if c := cpuRe.FindStringSubmatch(sc.Text()); c != nil {
			v, _ := strconv.ParseFloat(c[1], 64)
			cpu[m[1]] = append(cpu[m[1]], v)
		}
	}
	return ns, cpu, sc.Err()
}

func (b *bench) table() string {
	var s strings.Builder
	if b.w != nil {
		b.mainTable(&s)
	}
	if len(b.idxRows) > 0 {
		if b.w != nil {
			s.WriteString("\n")
		}
		s.WriteString("## Indexed caches: per-file reads (measures 10–14)\n\n")
		s.WriteString(b.idxIntro)
		writeRows(&s, b.idxRows)
	}
	if len(b.stockRows) > 0 {
		s.WriteString("\n## Stock caches at wire speed (measures 15, 17 and 18)\n\n")
		s.WriteString(b.stockIntro)
		writeRows(&s, b.stockRows)
	}
	if len(b.buildRows) > 0 {
		s.WriteString("\n## Builds on narfs (measures 19 and 20)\n\n")
		s.WriteString(b.buildIntro)
		writeRows(&s, b.buildRows)
	}
	if len(b.daemonRows) > 0 {
		s.WriteString("\n## The daemon front end (measure 21)\n\n")
		s.WriteString(b.daemonIntro)
		writeRows(&s, b.daemonRows)
	}
	return s.String()
}

func (b *bench) mainTable(s *strings.Builder) {
	fmt.Fprintf(s, "Workload: %d store paths, %d files, %s of file contents; largest path %s; NARs %s zstd, %s xz, %s none. Medians of %d runs.\n\n",
		len(b.w.All), b.w.Files, mib(b.w.FileBytes), mib(fileSize(b.t, "/nix/store/"+b.w.BigFile)),
		mib(b.w.NarBytes["zstd"]), mib(b.w.NarBytes["xz"]), mib(b.w.NarBytes["none"]), b.runs)
	writeRows(s, b.rows)
}

func writeRows(s *strings.Builder, rows []benchRow) {
	s.WriteString("| # | Measure | narfs | Reference | Ratio / result | Target | Met | Fetched ÷ read |\n")
	s.WriteString("|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(s, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", r.num, r.measure, r.narfs, r.reference, r.result, r.target, r.met, r.amp)
	}
}

func ratio(a, b time.Duration) float64 { return float64(a) / float64(b) }

func secs(d time.Duration) string { return fmt.Sprintf("%.3f s", d.Seconds()) }

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func rate(n int64, d time.Duration) string {
	return fmt.Sprintf("%.0f MB/s", float64(n)/1e6/d.Seconds())
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func verdict(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

func slicesMax[T int64 | float64](xs []T) T {
	var m T
	for i, x := range xs {
		if i == 0 || x > m {
			m = x
		}
	}
	return m
}

func slicesMin[T int64 | float64](xs []T) T {
	var m T
	for i, x := range xs {
		if i == 0 || x < m {
			m = x
		}
	}
	return m
}

func fileSize(t testing.TB, p string) int64 {
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func countFiles(t testing.TB, dir string) int {
	n := 0
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil {
			n++
		}
		return nil
	})
	return n
}

// narURL is the cache key of the NAR holding rel (a path under the store).
func narURL(t testing.TB, cache, rel string) string {
	hash, _, _ := strings.Cut(rel, "-")
	data, err := os.ReadFile(filepath.Join(cache, hash+".narinfo"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "URL: "); ok {
			return v
		}
	}
	t.Fatalf("no URL in %s.narinfo", hash)
	return ""
}
