package integration

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/narfs/narfs/integration/linkshape"
	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/remote/chunkindex"
)

// The per-file reads of a cache written by narfs push (measures 10–14):
// what the chunk index buys over fetching whole NARs, cold on loopback and
// through a linkshape.S3Region proxy (narfs and Nix behind the same
// proxy), warm against a stock cache.

// idxVersion names the indexed workload; change it when idxPythonNix or
// the way the paths are made changes meaningfully.
const idxVersion = "idx-v3"

// idxPython is the interpreter the Python closure is made of (Debian's:
// libpython is linked in, the stdlib is one directory).
const (
	idxPython    = "/usr/bin/python3.11"
	idxPythonLib = "/usr/lib/python3.11"
)

// idxPythonNix makes a Python closure of three paths from the machine's
// interpreter: its shared libraries (those of the binary and of every
// lib-dynload module, and ld-linux), its stdlib (recompiled with
// unchecked-hash .pyc files, as a store's mtime of 1 would make every
// timestamp .pyc stale), and the binary patched to load only from the
// libraries' path (DT_RPATH, which also covers the modules' own needs).
// %s is the list of libraries.
const idxPythonNix = `
let
  sys = builtins.currentSystem;
  mk = name: deps: script: derivation {
    name = "narfs-bench-${name}"; system = sys; builder = "/bin/sh"; PATH = "/bin:/usr/bin";
    inherit deps;
    args = [ "-c" "set -e; mkdir -p $out/nix-support; for d in $deps; do echo $d; done > $out/nix-support/deps; ${script}" ];
  };
  libs = mk "py-libs" [] "mkdir -p $out/lib; cp -L %s /lib64/ld-linux-x86-64.so.2 $out/lib/";
  stdlib = mk "py-stdlib" [] "mkdir -p $out/lib; cp -r ` + idxPythonLib + ` $out/lib/; ` + idxPython + ` -m compileall -q -f -j 0 --invalidation-mode unchecked-hash $out/lib/python3.11 >/dev/null 2>&1 || true";
  python = mk "python3" [ libs stdlib ] "mkdir -p $out/bin; cp ` + idxPython + ` $out/bin/python3; chmod u+w $out/bin/python3; patchelf --set-interpreter ${libs}/lib/ld-linux-x86-64.so.2 --force-rpath --set-rpath ${libs}/lib $out/bin/python3";
in { inherit python libs stdlib; }
`

// idxRandomSize is the size of the one file of the random path;
// idxBigRandomSize that of the stock cache's large NAR that zstd barely
// shrinks (measure 15: there the download is the whole cost).
const (
	idxRandomSize    = 64 << 20
	idxBigRandomSize = 256 << 20
)

// idxWorkload is the store paths of the indexed measures and their caches.
type idxWorkload struct {
	Dir       string   `json:"dir"`
	PublicKey string   `json:"public_key"`
	Go        string   `json:"go"`         // base name: nix-store --add /usr/local/go
	Random    string   `json:"random"`     // base name: random.bin, idxRandomSize bytes
	BigRandom string   `json:"big_random"` // base name: random.bin, idxBigRandomSize bytes (stock cache only)
	Python    string   `json:"python"`     // base name: bin/python3; "" if it could not be made
	Stdlib    string   `json:"stdlib"`     // base name: lib/python3.11
	PyAll     []string `json:"py_all"`     // base names of the Python closure
	PyErr     string   `json:"py_err"`     // why there is no Python closure
	Stock     string   `json:"stock"`      // nix copy cache (zstd) of Go, Random, BigRandom and PyAll
	BuildTime string   `json:"build_time"` // how long making the paths took
	Indexed   string   `json:"-"`          // narfs push cache, written afresh by every run
	PushTime  string   `json:"-"`
}

// idxLink is one way to the indexed cache and to the stock one: the
// counting servers themselves, or a shaping proxy in front of each.
type idxLink struct {
	name     string
	url      string // the indexed cache
	stockURL string // the stock cache
}

// indexed runs measures 10–14 and adds their rows to b.idxRows.
func (b *bench) indexed() {
	t := b.t
	w := b.idxWorkload()
	srv, stock := serveCounting(t, w.Indexed), serveCounting(t, w.Stock)
	shaped := func(upstream string) string {
		px, err := linkshape.Start(upstream, linkshape.S3Region)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { px.Close() })
		return px.URL()
	}
	links := []idxLink{{"loopback", srv.URL, stock.URL}, {"s3-region", shaped(srv.URL), shaped(stock.URL)}}
	b.idxIntro = fmt.Sprintf("Indexed workload (pushed by `narfs push` with zstd, pushed in %s): the Go toolchain (`nix-store --add /usr/local/go`, %d files, %s); "+
		"a path of one %s random file; %s. s3-region = every request through linkshape.S3Region (%v), narfs and `nix copy` alike. Medians of %d runs.\n\n",
		w.PushTime, countFiles(t, "/nix/store/"+w.Go), mib(dirBytes("/nix/store/"+w.Go)), mib(idxRandomSize), b.pythonDesc(), linkshape.S3Region, b.runs)
	b.idxGo(srv, links)
	b.idxFirstByte(srv, stock, links)
	b.idxRandomReads(srv, links)
	b.idxPythonImports(srv, links)
	b.idxWarm(srv, stock, links)
}

// idxWorkload loads (or builds) the indexed workload once per run.
func (b *bench) idxWorkload() *idxWorkload {
	if b.idx == nil {
		b.idx = idxLoadOrBuild(b.t)
	}
	return b.idx
}

func (b *bench) pythonDesc() string {
	if b.idx.Python == "" {
		return "no Python closure (" + b.idx.PyErr + ")"
	}
	return fmt.Sprintf("a Python closure made from %s (%d paths, %s)", idxPython, len(b.idx.PyAll), mib(dirsBytes(b.idx.PyAll)))
}

// idxGo: measure 10, cold `go version` and `go build` of hello world from
// the mount against `nix copy` of the toolchain then the same command.
func (b *bench) idxGo(srv *countingCache, links []idxLink) {
	t := b.t
	w := b.idx
	h := b.scratch()
	defer os.RemoveAll(h)
	g := newGoRun(t, h)
	version, build, resetHome := g.version, g.build, g.reset
	goBytes, indexBytes := b.fileObjectBytes(w.Go, "bin/go")
	buildRuns := min(b.runs, 3)
	for _, l := range links {
		var narfsV, narfsB, nixV, nixB, nixCopy []time.Duration
		var amp []float64
		var reqs []int64
		for i := range b.runs {
			// narfs: go version on one fresh mount, go build on another
			// (in the first buildRuns runs only: a cold build takes 10–30 s).
			cache := b.scratch()
			m := benchMount(t, l.url, w.PublicKey, cache, nil, true)
			resetHome()
			dropCaches(t)
			before := srv.snapshot()
			narfsV = append(narfsV, timed(t, version(filepath.Join(m.Dir, w.Go))))
			tr := srv.since(before)
			amp = append(amp, float64(tr.allBytes)/float64(goBytes+indexBytes))
			reqs = append(reqs, int64(requests(tr)))
			m.stop(t)
			os.RemoveAll(cache)

			building := i < buildRuns
			if building {
				cache = b.scratch()
				m = benchMount(t, l.url, w.PublicKey, cache, nil, true)
				resetHome()
				dropCaches(t)
				narfsB = append(narfsB, timed(t, build(filepath.Join(m.Dir, w.Go))))
				m.stop(t)
				os.RemoveAll(cache)
			}

			// Nix: copy the path, then the same commands from the copy.
			root := b.scratch()
			resetHome()
			dropCaches(t)
			c := timed(t, nixCopyScript(l.url, w.PublicKey, root, w.Go))
			goroot := filepath.Join(root, "nix", "store", w.Go)
			v := timed(t, version(goroot))
			nixCopy, nixV = append(nixCopy, c), append(nixV, c+v)
			if building {
				resetHome()
				nixB = append(nixB, c+timed(t, build(goroot)))
			}
			os.RemoveAll(root)
		}
		r := ratio(median(narfsV), median(nixV))
		a := median(amp)
		b.addIdx(benchRow{"10", fmt.Sprintf("Cold `go version` from the Go toolchain path (%s): `bin/go version` vs `nix copy` of the path, then the same", l.name),
			fmt.Sprintf("%s; %d requests after mount-up", secs(median(narfsV)), median(reqs)),
			fmt.Sprintf("%s (nix copy %s)", secs(median(nixV)), secs(median(nixCopy))),
			fmt.Sprintf("time %.3f; upstream bytes %.2f× (bin/go's chunks %s + index %s)", r, a, mib(goBytes), mib(indexBytes)),
			"time ≤ 0.10, bytes ≤ 1.5×", verdict(r <= 0.10 && a <= 1.5) + fmt.Sprintf(" (time %s, bytes %s)", verdict(r <= 0.10), verdict(a <= 1.5)),
			fmt.Sprintf("%.2f× bin/go's compressed chunks + index", a)})
		rb := ratio(median(narfsB), median(nixB))
		b.addIdx(benchRow{"10b", fmt.Sprintf("Cold `go build` of a hello-world module, empty GOCACHE (%s, %d runs), vs `nix copy` then the same build", l.name, buildRuns),
			secs(median(narfsB)), fmt.Sprintf("%s (nix copy %s)", secs(median(nixB)), secs(median(nixCopy))),
			fmt.Sprintf("time %.2f", rb), "(reported)", "", ""})
	}
}

// goRun makes the command lines that run the Go toolchain of a store
// path in a clean environment: no GOROOT, the toolchain's own version,
// HOME and the build cache in a directory of their own (reset empties it).
type goRun struct{ home, hello string }

func newGoRun(t *testing.T, home string) *goRun {
	g := &goRun{home: home, hello: filepath.Join(home, "hello")}
	if err := os.MkdirAll(g.hello, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(g.hello, "go.mod"), []byte("module hello\n\ngo 1.21\n"), 0o644)
	os.WriteFile(filepath.Join(g.hello, "main.go"), []byte("package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"hello\") }\n"), 0o644)
	return g
}

func (g *goRun) env(goroot string) string {
	h := g.home
	return fmt.Sprintf("env -i PATH=/usr/bin:/bin HOME='%s' GOCACHE='%s/cache' GOPATH='%s/gopath' GOTOOLCHAIN=local GOPROXY=off CGO_ENABLED=0 '%s/bin/go'", h, h, h, goroot)
}

func (g *goRun) reset() {
	os.RemoveAll(filepath.Join(g.home, "cache"))
	os.RemoveAll(filepath.Join(g.home, "gopath"))
}

// version is `go version`; build is `go build` of hello world and its run.
func (g *goRun) version(goroot string) string { return g.env(goroot) + " version >/dev/null" }

func (g *goRun) build(goroot string) string {
	return fmt.Sprintf("cd '%s' && %s build -o '%s/hello.bin' . && '%s/hello.bin' >/dev/null", g.hello, g.env(goroot), g.home, g.home)
}

// pythonImports imports a few stdlib modules with the Python closure of
// store (a mount or a Nix root's store) bound over /nix/store in a private
// mount namespace.
func (w *idxWorkload) pythonImports(store string) string {
	return fmt.Sprintf(`unshare -m bash -c "mount --bind '%s' /nix/store && PYTHONHOME=/nix/store/%s PYTHONDONTWRITEBYTECODE=1 /nix/store/%s/bin/python3 -c 'import json, email, http.client, sqlite3'"`,
		store, w.Stdlib, w.Python)
}

// idxFirstByte: measure 11, the first byte of small files of the Go path
// (≥ 100 MB): VERSION, early in the NAR, and the NAR's last regular file.
// Requests are counted at the server after the mount is up. The reference,
// nar-serve, reads the stock cache: it refuses a narinfo with lines it
// does not know ("unknown key NarfsIndex").
func (b *bench) idxFirstByte(srv, stock *countingCache, links []idxLink) {
	t := b.t
	w := b.idx
	x := b.index(w.Go)
	last := lastFile(x.Listing)
	narServe, whyNot := narServeBinary()
	for _, file := range []string{"VERSION", last} {
		n, err := x.Listing.Find(file)
		if err != nil {
			t.Fatal(err)
		}
		rel := w.Go + "/" + file
		for _, l := range links {
			var narfsT, nsT []time.Duration
			var reqs, nsReqs, fetched []int64
			var kinds string
			for range b.runs {
				cache := b.scratch()
				m := benchMount(t, l.url, w.PublicKey, cache, nil, true)
				dropCaches(t)
				before := srv.snapshot()
				narfsT = append(narfsT, timed(t, fmt.Sprintf("head -c 1 '%s/%s' >/dev/null", m.Dir, rel)))
				tr := srv.since(before)
				reqs, fetched = append(reqs, int64(requests(tr))), append(fetched, tr.allBytes)
				kinds = requestKinds(tr)
				m.stop(t)
				os.RemoveAll(cache)
			}
			ref, result := "nar-serve not available: "+whyNot, ""
			faster := false
			if narServe != "" {
				ns := startNarServe(t, narServe, l.stockURL)
				var nsBytes []int64
				for range b.runs {
					dropCaches(t)
					before := stock.snapshot()
					nsT = append(nsT, timed(t, fmt.Sprintf("curl -sf -o /dev/null 'http://%s/nix/store/%s'", ns, rel)))
					tr := stock.since(before)
					nsReqs, nsBytes = append(nsReqs, int64(requests(tr))), append(nsBytes, tr.allBytes)
				}
				ref = fmt.Sprintf("nar-serve (stock cache) %s, %d requests, %s sent", secs(median(nsT)), median(nsReqs), mib(median(nsBytes)))
				result = fmt.Sprintf("time %.2f", ratio(median(narfsT), median(nsT)))
				faster = median(narfsT) < median(nsT)
			}
			b.addIdx(benchRow{"11", fmt.Sprintf("First byte, cold (%s): `head -c 1` of `%s` (%d bytes at NAR offset %s of %s) after mount-up", l.name, file, n.Size, mib(n.NarOffset), mib(x.NarSize)),
				fmt.Sprintf("%s; requests %d (max %d): %s; %s sent", secs(median(narfsT)), median(reqs), slicesMax(reqs), kinds, mib(median(fetched))), ref, result,
				"≤ 3 requests, faster than nar-serve", fmt.Sprintf("%s (requests %s, faster %s)", verdict(slicesMax(reqs) <= 3 && faster), verdict(slicesMax(reqs) <= 3), verdict(faster)), ""})
		}
	}
}

// idxRandomReads: measure 12, 4 KiB preads at 100 random offsets (fixed
// seed) of a 64 MiB file; fetched bytes per read against 2 chunks.
func (b *bench) idxRandomReads(srv *countingCache, links []idxLink) {
	t := b.t
	w := b.idx
	x := b.index(w.Random)
	n, err := x.Listing.Find("random.bin")
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	offsets := make([]string, 100)
	touched := map[int]bool{}
	for i := range offsets {
		off := r.Int64N(idxRandomSize - 4096)
		offsets[i] = fmt.Sprint(off)
		first, last := x.Span(n.NarOffset+off, 4096)
		for c := first; c < last; c++ {
			touched[c] = true
		}
	}
	var ideal int64
	for c := range touched {
		ideal += x.Chunks[c].FileLen
	}
	script := func(dir string) string {
		return fmt.Sprintf(`python3 -c 'import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
for off in sys.argv[2:]:
    assert len(os.pread(fd, 4096, int(off))) == 4096
' '%s/%s/random.bin' %s`, dir, w.Random, strings.Join(offsets, " "))
	}
	for _, l := range links {
		var times []time.Duration
		var perRead []float64
		for range b.runs {
			cache := b.scratch()
			m := benchMount(t, l.url, w.PublicKey, cache, nil, true)
			dropCaches(t)
			before := srv.snapshot()
			times = append(times, timed(t, script(m.Dir)))
			perRead = append(perRead, float64(srv.since(before).allBytes)/float64(len(offsets)))
			m.stop(t)
			os.RemoveAll(cache)
		}
		pr := median(perRead)
		b.addIdx(benchRow{"12", fmt.Sprintf("Random reads, cold (%s): 100 `pread`s of 4 KiB at fixed random offsets of a %s file", l.name, mib(idxRandomSize)),
			fmt.Sprintf("%s; fetched %s per read", secs(median(times)), mib(int64(pr))),
			fmt.Sprintf("%d distinct chunks cover the reads (%s, %s per read)", len(touched), mib(ideal), mib(ideal/int64(len(offsets)))),
			fmt.Sprintf("%.2f chunks per read", pr/chunkindex.TargetChunk), "≤ 2 chunks (2 MiB) per read", verdict(pr <= 2*chunkindex.TargetChunk),
			fmt.Sprintf("%.0f× (fetched ÷ 4 KiB read); %.2f× the covering chunks", pr/4096, pr*float64(len(offsets))/float64(ideal))})
	}
}

// idxPythonImports: measure 13, the pushed Python closure imports a few
// stdlib modules with the mount bound over /nix/store in a private mount
// namespace, against `nix copy` of the closure and the same run from it.
func (b *bench) idxPythonImports(srv *countingCache, links []idxLink) {
	t := b.t
	w := b.idx
	if w.Python == "" {
		b.addIdx(benchRow{"13", "Python imports (json, email, http.client, sqlite3) from a pushed closure", "not available: " + w.PyErr, "", "", "≤ 0.3", "", ""})
		return
	}
	run := w.pythonImports
	for _, l := range links {
		var narfsT, nixT, copyT []time.Duration
		var fetched, reqs []int64
		for range b.runs {
			cache := b.scratch()
			m := benchMount(t, l.url, w.PublicKey, cache, nil, true)
			dropCaches(t)
			before := srv.snapshot()
			narfsT = append(narfsT, timed(t, run(m.Dir)))
			tr := srv.since(before)
			fetched, reqs = append(fetched, tr.allBytes), append(reqs, int64(requests(tr)))
			m.stop(t)
			os.RemoveAll(cache)

			root := b.scratch()
			dropCaches(t)
			c := timed(t, nixCopyScript(l.url, w.PublicKey, root, w.Python))
			copyT, nixT = append(copyT, c), append(nixT, c+timed(t, run(filepath.Join(root, "nix", "store"))))
			os.RemoveAll(root)
		}
		r := ratio(median(narfsT), median(nixT))
		b.addIdx(benchRow{"13", fmt.Sprintf("Python imports json, email, http.client, sqlite3, cold (%s): pushed closure of %d paths under `unshare -m` + bind over /nix/store, vs `nix copy` of it then the same", l.name, len(w.PyAll)),
			fmt.Sprintf("%s; %d requests, fetched %s", secs(median(narfsT)), median(reqs), mib(median(fetched))),
			fmt.Sprintf("%s (nix copy %s)", secs(median(nixT)), secs(median(copyT))),
			fmt.Sprintf("time %.3f", r), "≤ 0.3", verdict(r <= 0.3),
			fmt.Sprintf("fetched %s of the closure's %s of files", mib(median(fetched)), mib(dirsBytes(w.PyAll)))})
	}
}

// idxWarm: measure 14, `cat` of the largest file of the indexed paths
// (random.bin) once its chunks are fetched, page cache dropped, against
// the same path from a stock cache (`nix copy`, zstd); and narfs's VmHWM
// while reading it, cold (both links) and warm.
func (b *bench) idxWarm(srv, stockSrv *countingCache, links []idxLink) {
	t := b.t
	w := b.idx
	rel := w.Random + "/random.bin"
	var hwm []int64
	var warmCache string
	cold := map[string]time.Duration{}
	for _, l := range links {
		cache := b.scratch()
		m := benchMount(t, l.url, w.PublicKey, cache, nil, true)
		dropCaches(t)
		m.resetHWM(t)
		cold[l.name] = timed(t, fmt.Sprintf("cat '%s/%s' >/dev/null", m.Dir, rel))
		hwm = append(hwm, m.hwm(t))
		m.stop(t)
		if l.name == "loopback" {
			warmCache = cache
		} else {
			os.RemoveAll(cache)
		}
	}
	defer os.RemoveAll(warmCache)
	stockCache := b.scratch()
	defer os.RemoveAll(stockCache)
	idx := benchMount(t, srv.URL, w.PublicKey, warmCache, nil, true)
	stock := benchMount(t, stockSrv.URL, w.PublicKey, stockCache, nil, true)
	cat := func(m *benchDaemon) string { return fmt.Sprintf("cat '%s/%s' >/dev/null", m.Dir, rel) }
	timed(t, cat(idx)) // already fetched
	timed(t, cat(stock))
	idx.resetHWM(t)
	before, stockBefore := srv.snapshot(), stockSrv.snapshot()
	var idxT, stockT []time.Duration
	for range 2 * b.runs {
		dropCaches(t)
		idxT = append(idxT, timed(t, cat(idx)))
		dropCaches(t)
		stockT = append(stockT, timed(t, cat(stock)))
	}
	warmHWM := idx.hwm(t)
	fetched := srv.since(before).allBytes + stockSrv.since(stockBefore).allBytes
	idx.stop(t)
	stock.stop(t)
	r := ratio(median(stockT), median(idxT)) // throughput indexed ÷ stock
	b.addIdx(benchRow{"14", fmt.Sprintf("Warm read: `cat` of the %s file of an indexed path, page cache dropped, vs the same path from a stock `nix copy` zstd cache (%d reads each)", mib(idxRandomSize), 2*b.runs),
		rate(idxRandomSize, median(idxT)), "stock " + rate(idxRandomSize, median(stockT)),
		fmt.Sprintf("%.2f", r), "≥ 0.95", verdict(r >= 0.95), fmt.Sprintf("%d bytes fetched by the timed runs", fetched)})
	peak := max(slicesMax(hwm), warmHWM)
	b.addIdx(benchRow{"14m", "Memory: narfs VmHWM after clear_refs while reading that file of an indexed path",
		fmt.Sprintf("cold %s (s3-region %s), warm %s", mib(hwm[0]), mib(hwm[1]), mib(warmHWM)), "",
		fmt.Sprintf("cold read %s (s3-region %s)", rate(idxRandomSize, cold["loopback"]), rate(idxRandomSize, cold["s3-region"])),
		"≤ 64 MiB", verdict(peak <= 64<<20), ""})
}

func (b *bench) addIdx(r benchRow) { b.idxRows = append(b.idxRows, r) }

// index reads the chunk index of a path of the indexed cache.
func (b *bench) index(base string) *chunkindex.Index {
	t := b.t
	x, err := chunkindex.Decode(readFile(t, filepath.Join(b.idx.Indexed, chunkindex.AliasKey(hashOf(base)))))
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// fileObjectBytes is how many bytes of the stored object hold the chunks
// of file rel of path base, and the size of the path's index object.
func (b *bench) fileObjectBytes(base, rel string) (chunks, index int64) {
	t := b.t
	index = int64(len(readFile(t, filepath.Join(b.idx.Indexed, chunkindex.AliasKey(hashOf(base))))))
	x := b.index(base)
	n, err := x.Listing.Find(rel)
	if err != nil {
		t.Fatal(err)
	}
	first, last := x.Span(n.NarOffset, n.Size)
	for _, c := range x.Chunks[first:last] {
		chunks += c.FileLen
	}
	return chunks, index
}

// lastFile is the regular file stored last in the NAR (its path).
func lastFile(l *nar.Listing) string {
	var best string
	var off int64 = -1
	var walk func(n *nar.Node, p string)
	walk = func(n *nar.Node, p string) {
		if n.Type == nar.TypeRegular && n.NarOffset > off {
			best, off = p, n.NarOffset
		}
		for name, c := range n.Entries {
			walk(c, strings.TrimPrefix(p+"/"+name, "/"))
		}
	}
	walk(l.Root, "")
	return best
}

// requests counts the GETs of a traffic snapshot; requestKinds names them.
func requests(tr traffic) int {
	n := 0
	for _, v := range tr.gets {
		n += v
	}
	return n
}

func requestKinds(tr traffic) string {
	kinds := map[string]int{}
	for k, v := range tr.gets {
		switch {
		case strings.HasSuffix(k, ".narinfo"):
			kinds["narinfo"] += v
		case strings.HasPrefix(k, "index/"):
			kinds["index"] += v
		case strings.HasPrefix(k, "nar/"):
			kinds["chunk"] += v
		case strings.HasSuffix(k, ".ls"):
			kinds["ls"] += v
		default:
			kinds[k] += v
		}
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(kinds)) {
		parts = append(parts, fmt.Sprintf("%d %s", kinds[k], k))
	}
	return strings.Join(parts, " + ")
}

// narServeBinary finds numtide/nar-serve: NARFS_BENCH_NARSERVE, else on
// PATH. The Go module proxy does not serve it (403), so `go install
// github.com/numtide/nar-serve@latest` cannot put it there.
func narServeBinary() (path, whyNot string) {
	if p := os.Getenv("NARFS_BENCH_NARSERVE"); p != "" {
		return p, ""
	}
	if p, err := exec.LookPath("nar-serve"); err == nil {
		return p, ""
	}
	return "", "not installed (`go install github.com/numtide/nar-serve@latest`: the module proxy answers 403; build it from source and set NARFS_BENCH_NARSERVE)"
}

// startNarServe runs nar-serve on 127.0.0.1 against cacheURL and returns
// its host:port; the test's cleanup stops it.
func startNarServe(t *testing.T, bin, cacheURL string) string {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "HTTP_ADDR="+addr, "NIX_CACHE_URL="+cacheURL)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for deadline := time.Now().Add(20 * time.Second); ; {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return addr
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("nar-serve did not start on %s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// nixCopyScript is `nix copy` of paths (base names) from url into a fresh
// local?root=.
func nixCopyScript(url, key, root string, paths ...string) string {
	return fmt.Sprintf("nix copy --from %s --to 'local?root=%s' --option trusted-public-keys '%s' /nix/store/%s",
		url, root, key, strings.Join(paths, " /nix/store/"))
}

func dirBytes(dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

func dirsBytes(bases []string) int64 {
	var n int64
	for _, p := range bases {
		n += dirBytes("/nix/store/" + p)
	}
	return n
}

// idxLoadOrBuild returns the indexed workload: its store paths made once
// and reused while valid, the stock cache likewise, and the indexed cache
// pushed afresh by the narfs under test.
func idxLoadOrBuild(t *testing.T) *idxWorkload {
	t.Helper()
	libs, libErr := pythonLibs()
	expr := fmt.Sprintf(idxPythonNix, strings.Join(libs, " "))
	goVersion, err := os.ReadFile("/usr/local/go/VERSION")
	if err != nil {
		t.Fatalf("the Go toolchain workload needs /usr/local/go: %v", err)
	}
	sum := sha256.Sum256([]byte(idxVersion + expr + string(goVersion)))
	dir := filepath.Join(benchRoot, idxVersion+"-"+hex.EncodeToString(sum[:6]))
	manifest := filepath.Join(dir, "manifest.json")
	w := &idxWorkload{}
	if data, err := os.ReadFile(manifest); err == nil && json.Unmarshal(data, w) == nil && idxValid(w) {
		t.Logf("reusing indexed workload %s (built in %s)", dir, w.BuildTime)
	} else {
		if w, err = idxBuild(t, dir, expr, libErr); err != nil {
			t.Fatalf("indexed workload: %v", err)
		}
		data, _ := json.MarshalIndent(w, "", "  ")
		if err := os.WriteFile(manifest, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	w.Indexed = filepath.Join(dir, "cache-indexed")
	os.RemoveAll(w.Indexed)
	if err := os.MkdirAll(w.Indexed, 0o755); err != nil {
		t.Fatal(err)
	}
	paths := []string{"/nix/store/" + w.Go, "/nix/store/" + w.Random}
	for _, p := range w.PyAll {
		paths = append(paths, "/nix/store/"+p)
	}
	start := time.Now()
	args := append([]string{"push", "--no-closure", "--secret-key", filepath.Join(dir, "sk"), "file://" + w.Indexed}, paths...)
	if out, err := exec.Command(benchBinary(t), args...).CombinedOutput(); err != nil {
		t.Fatalf("narfs push: %v\n%s", err, out)
	}
	w.PushTime = time.Since(start).Round(100 * time.Millisecond).String()
	return w
}

func idxValid(w *idxWorkload) bool {
	paths := []string{w.Go, w.Random, w.BigRandom}
	paths = append(paths, w.PyAll...)
	for _, p := range paths {
		if _, err := sh(w.Dir, "nix-store", "--check-validity", "/nix/store/"+p); err != nil {
			return false
		}
	}
	return exists(filepath.Join(w.Stock, "done"))
}

func idxBuild(t *testing.T, dir, expr string, libErr error) (*idxWorkload, error) {
	start := time.Now()
	os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	w := &idxWorkload{Dir: dir, Stock: filepath.Join(dir, "cache-stock")}
	if _, err := sh(dir, "nix-store", "--generate-binary-cache-key", "narfs-bench-idx-1", "sk", "pk"); err != nil {
		return nil, err
	}
	pk, _ := os.ReadFile(filepath.Join(dir, "pk"))
	w.PublicKey = strings.TrimSpace(string(pk))
	out, err := sh(dir, "nix-store", "--add", "/usr/local/go")
	if err != nil {
		return nil, err
	}
	w.Go = filepath.Base(out)

	if w.Random, err = addRandomPath(dir, "narfs-bench-random", idxRandomSize, 'n'); err != nil {
		return nil, err
	}
	if w.BigRandom, err = addRandomPath(dir, "narfs-bench-big-random", idxBigRandomSize, 'b'); err != nil {
		return nil, err
	}

	if err := buildPython(dir, expr, libErr, w); err != nil {
		w.PyErr = err.Error()
		t.Logf("no Python closure: %v", err)
	}
	stock := fmt.Sprintf("file://%s?compression=zstd&write-nar-listing=true&secret-key=%s", w.Stock, filepath.Join(dir, "sk"))
	stockPaths := []string{"/nix/store/" + w.Go, "/nix/store/" + w.Random, "/nix/store/" + w.BigRandom}
	for _, p := range w.PyAll {
		stockPaths = append(stockPaths, "/nix/store/"+p)
	}
	if err := nixCopyTo(dir, stock, stockPaths...); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(w.Stock, "done"), nil, 0o644); err != nil {
		return nil, err
	}
	w.BuildTime = time.Since(start).Round(time.Second).String()
	t.Logf("built indexed workload %s in %s", dir, w.BuildTime)
	return w, nil
}

// addRandomPath adds a store path named name holding random.bin, size
// bytes of a seeded ChaCha8 stream, and returns its base name.
func addRandomPath(dir, name string, size int64, seed byte) (string, error) {
	rdir := filepath.Join(dir, name)
	if err := os.MkdirAll(rdir, 0o755); err != nil {
		return "", err
	}
	defer os.RemoveAll(rdir)
	f, err := os.Create(filepath.Join(rdir, "random.bin"))
	if err != nil {
		return "", err
	}
	_, err = io.CopyN(f, rand.NewChaCha8([32]byte{'n', 'a', 'r', 'f', 's', seed}), size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", err
	}
	out, err := sh(dir, "nix-store", "--add", rdir)
	if err != nil {
		return "", err
	}
	return filepath.Base(out), nil
}

// buildPython makes the Python closure with nix-build and checks that it
// runs from the store.
func buildPython(dir, expr string, libErr error, w *idxWorkload) error {
	if libErr != nil {
		return libErr
	}
	if !onPath("patchelf") {
		return fmt.Errorf("patchelf is not installed")
	}
	if err := os.WriteFile(filepath.Join(dir, "python.nix"), []byte(expr), 0o644); err != nil {
		return err
	}
	out, err := sh(dir, "nix-build", "--no-out-link", "python.nix", "-A", "python", "-A", "stdlib")
	if err != nil {
		return err
	}
	built := strings.Fields(out)
	if len(built) != 2 {
		return fmt.Errorf("nix-build printed %q", out)
	}
	w.Python, w.Stdlib = filepath.Base(built[0]), filepath.Base(built[1])
	req, err := sh(dir, "nix-store", "-qR", built[0])
	if err != nil {
		return err
	}
	for _, p := range strings.Fields(req) {
		w.PyAll = append(w.PyAll, filepath.Base(p))
	}
	cmd := exec.Command(built[0]+"/bin/python3", "-c", "import json, email, http.client, sqlite3, sys; print(sys.prefix)")
	cmd.Env = append(os.Environ(), "PYTHONHOME="+built[1])
	if out, err := cmd.CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != built[1] {
		w.Python = ""
		return fmt.Errorf("the patched interpreter does not run from the store: %v: %s", err, out)
	}
	return nil
}

// pythonLibs is every shared library the interpreter and its lib-dynload
// modules need, by the path ldd resolves (the names are the sonames).
func pythonLibs() ([]string, error) {
	if !exists(idxPython) || !exists(filepath.Join(idxPythonLib, "lib-dynload")) {
		return nil, fmt.Errorf("no %s with %s", idxPython, idxPythonLib)
	}
	mods, _ := filepath.Glob(filepath.Join(idxPythonLib, "lib-dynload", "*.so"))
	out, err := exec.Command("ldd", append([]string{idxPython}, mods...)...).Output()
	if err != nil && len(out) == 0 {
		return nil, fmt.Errorf("ldd: %v", err)
	}
	seen := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		_, rest, ok := strings.Cut(line, "=> ")
		if !ok {
			continue
		}
		p, _, _ := strings.Cut(rest, " ")
		if strings.HasPrefix(p, "/") {
			seen[p] = true
		}
	}
	if len(seen) == 0 {
		return nil, fmt.Errorf("ldd found no libraries for %s", idxPython)
	}
	return slices.Sorted(maps.Keys(seen)), nil
}
