package compress

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// benchNARSize is the size of the benchmark NAR: large enough that tool
// start-up and decoder warm-up vanish in the per-op time.
const benchNARSize = 100 << 20

// benchCase is one compressed file of the benchmark NAR.
type benchCase struct {
	name     string   // subbenchmark name
	algo     string   // Compression value
	compress []string // C command line making the file from stdin
	cTool    []string // C command line decoding it, for the reference run
	// file, if set, names the case whose file this one decodes: only the
	// C tool differs.
	file string
}

var benchCases = []benchCase{
	{"xz", "xz", []string{"xz", "-6", "-c"}, []string{"xz", "-dc"}, ""},
	// Nix's parallel-compression: liblzma multi-threaded, 24 MiB blocks here.
	{"xz-multiblock", "xz", []string{"xz", "-6", "-T2", "--block-size=24MiB", "-c"}, []string{"xz", "-T0", "-dc"}, ""},
	{"zstd", "zstd", []string{"zstd", "-q", "-c"}, []string{"zstd", "-q", "-dc"}, ""},
	// Independent 16 MiB frames, as Nix writes: the CLI on each 16 MiB
	// piece, concatenated. -T0 shows the CLI does not decode in parallel.
	{"zstd-frames", "zstd", []string{"split", "-b", "16M", "--filter=zstd -q -c"}, []string{"zstd", "-q", "-dc"}, ""},
	{"zstd-frames-T0", "zstd", nil, []string{"zstd", "-q", "-T0", "-dc"}, "zstd-frames"},
	{"bzip2", "bzip2", []string{"bzip2", "-9", "-c"}, []string{"bzip2", "-dc"}, ""},
	{"bzip2-lbzip2", "bzip2", nil, []string{"lbzip2", "-dc"}, "bzip2"},
	// Quality 9, not brotli's default 11, which takes minutes on 100 MB.
	{"br", "br", []string{"brotli", "-q", "9", "-c"}, []string{"brotli", "-dc"}, ""},
	{"gzip", "gzip", []string{"gzip", "-6", "-c"}, []string{"gzip", "-dc"}, ""},
	{"lz4", "lz4", []string{"lz4", "-q", "-c"}, []string{"lz4", "-q", "-dc"}, ""},
}

// benchDir caches the NAR and its compressed forms across runs.
func benchDir(b *testing.B) string {
	dir := filepath.Join(os.TempDir(), "narfs-bench")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	return dir
}

// benchNAR returns the path of a ~100 MB NAR of real files: the Go
// distribution's binaries and sources, cut to benchNARSize (decoders do not
// care that the cut NAR is incomplete).
func benchNAR(b *testing.B) string {
	path := filepath.Join(benchDir(b), "go-dist.nar")
	if fi, err := os.Stat(path); err == nil && fi.Size() == benchNARSize {
		return path
	}
	if _, err := exec.LookPath("nix-store"); err != nil {
		b.Skip("nix-store not installed")
	}
	gorootOut, err := exec.Command("go", "env", "GOROOT").Output()
	goroot := strings.TrimSpace(string(gorootOut))
	if err != nil || goroot == "" {
		b.Skip("no GOROOT to dump")
	}
	out, err := os.Create(path + ".tmp")
	if err != nil {
		b.Fatal(err)
	}
	defer out.Close()
	dump := exec.Command("nix-store", "--dump", goroot)
	stdout, err := dump.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := dump.Start(); err != nil {
		b.Fatal(err)
	}
	n, err := io.Copy(out, io.LimitReader(stdout, benchNARSize))
	_ = dump.Process.Kill() // it has more to write than we want
	_ = dump.Wait()
	if err != nil || n < benchNARSize {
		b.Skipf("dump of %s: %d bytes, %v", goroot, n, err)
	}
	if err := out.Close(); err != nil {
		b.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		b.Fatal(err)
	}
	return path
}

// benchFile returns the benchmark NAR compressed as c says, making it with
// the C tool on first use.
func benchFile(b *testing.B, c benchCase) string {
	nar := benchNAR(b)
	if c.file != "" {
		for _, o := range benchCases {
			if o.name == c.file {
				return benchFile(b, o)
			}
		}
		b.Fatalf("no bench case %q", c.file)
	}
	path := filepath.Join(benchDir(b), fmt.Sprintf("go-dist.nar.%s", c.name))
	if _, err := os.Stat(path); err == nil {
		return path
	}
	if _, err := exec.LookPath(c.compress[0]); err != nil {
		b.Skipf("%s not installed", c.compress[0])
	}
	in, err := os.Open(nar)
	if err != nil {
		b.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(path + ".tmp")
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(c.compress[0], c.compress[1:]...)
	cmd.Stdin, cmd.Stdout = in, out
	if err := cmd.Run(); err != nil {
		b.Fatalf("%v: %v", c.compress, err)
	}
	if err := out.Close(); err != nil {
		b.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		b.Fatal(err)
	}
	return path
}

// drain reads r to the end the way a NAR consumer would, with a large
// buffer, and returns the byte count and the peak live heap seen while
// reading (sampled every 8 MiB; ReadMemStats stops the world).
func drain(r io.Reader) (n int64, peakHeap uint64, err error) {
	buf := make([]byte, 256<<10)
	var ms runtime.MemStats
	for next := int64(0); ; {
		m, rerr := r.Read(buf)
		n += int64(m)
		if n >= next {
			runtime.ReadMemStats(&ms)
			peakHeap = max(peakHeap, ms.HeapInuse)
			next = n + 8<<20
		}
		if rerr == io.EOF {
			return n, peakHeap, nil
		}
		if rerr != nil {
			return n, peakHeap, rerr
		}
	}
}

// BenchmarkDecode compares NewReader fed through an io.Reader (Name) and
// an *os.File (Name-file), its pure-Go path (Name-go) and the C tool run
// directly (Name-C) on the same file; MB/s are of the
// decompressed NAR, so the ratios are comparable. For zstd, Name-serial is
// the single-threaded streaming decoder that zstdFrames replaced.
func BenchmarkDecode(b *testing.B) {
	for _, c := range benchCases {
		if c.file == "" {
			b.Run(c.name, func(b *testing.B) { benchOurs(b, c, true, false) })
			if len(algorithms[c.algo].tools) > 0 {
				b.Run(c.name+"-file", func(b *testing.B) { benchOurs(b, c, true, true) })
			}
			b.Run(c.name+"-go", func(b *testing.B) { benchOurs(b, c, false, false) })
			if c.algo == "zstd" {
				b.Run(c.name+"-serial", func(b *testing.B) {
					benchOpen(b, c, false, func(r io.Reader) (io.ReadCloser, error) { return newZstdWorkers(r, 1), nil })
				})
			}
		}
		b.Run(c.name+"-C", func(b *testing.B) { benchTool(b, c) })
	}
}

// benchOurs decodes with NewReader, or its pure-Go path if !useTools. The
// input is the file itself if asFile (file:// caches), or else the file
// hidden behind an io.Reader (HTTP bodies), which a child gets through a pipe.
func benchOurs(b *testing.B, c benchCase, useTools, asFile bool) {
	benchOpen(b, c, asFile, func(r io.Reader) (io.ReadCloser, error) { return newReader(c.algo, r, useTools) })
}

// benchOpen decodes with open.
func benchOpen(b *testing.B, c benchCase, asFile bool, open func(io.Reader) (io.ReadCloser, error)) {
	path := benchFile(b, c)
	b.SetBytes(benchNARSize)
	var before, after runtime.MemStats
	var peak uint64
	runtime.GC()
	runtime.ReadMemStats(&before)
	cpu := startCPU()
	b.ResetTimer()
	for b.Loop() {
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		var in io.Reader = struct{ io.Reader }{f}
		if asFile {
			in = f
		}
		rc, err := open(in)
		if err != nil {
			b.Fatal(err)
		}
		n, p, err := drain(rc)
		peak = max(peak, p)
		rc.Close()
		f.Close()
		if err != nil || n != benchNARSize {
			b.Fatalf("decoded %d bytes, %v", n, err)
		}
	}
	b.StopTimer()
	cpu.report(b)
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(peak)/(1<<20), "peakheap-MiB")
	b.ReportMetric(float64(after.HeapSys)/(1<<20), "heapsys-MiB")
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/float64(b.N)/(1<<20), "alloc-MiB/op")
}

func benchTool(b *testing.B, c benchCase) {
	path := benchFile(b, c)
	if _, err := exec.LookPath(c.cTool[0]); err != nil {
		b.Skipf("%s not installed", c.cTool[0])
	}
	b.SetBytes(benchNARSize)
	cpu := startCPU()
	for b.Loop() {
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		cmd := exec.Command(c.cTool[0], c.cTool[1:]...)
		cmd.Stdin = f
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		n, _, err := drain(out)
		if werr := cmd.Wait(); werr != nil || err != nil || n != benchNARSize {
			b.Fatalf("%v: %d bytes, %v, %v: %s", c.cTool, n, err, werr, stderr.Bytes())
		}
		f.Close()
	}
	cpu.report(b)
}

// cpuClock measures the CPU time of this process and its reaped children.
// On a shared machine wall-clock MB/s are noisy; CPU per op is not, and
// shows what parallel decoders spend for their speed.
type cpuClock struct{ start time.Duration }

func cpuNow() time.Duration {
	var self, children syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &children)
	total := time.Duration(0)
	for _, tv := range []syscall.Timeval{self.Utime, self.Stime, children.Utime, children.Stime} {
		total += time.Duration(tv.Nano())
	}
	return total
}

func startCPU() cpuClock { return cpuClock{cpuNow()} }

func (c cpuClock) report(b *testing.B) {
	b.ReportMetric(float64(cpuNow()-c.start)/float64(b.N)/1e6, "cpu-ms/op")
}
