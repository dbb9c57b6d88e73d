package remote

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/narfs/narfs/integration/linkshape"
	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/nar/compress"
	"github.com/narfs/narfs/remote/backend"
	"github.com/narfs/narfs/remote/internal/fetch"
	"github.com/narfs/narfs/remote/internal/trust"
	"github.com/narfs/narfs/remote/localcache"
	"github.com/narfs/narfs/remote/narinfo"
	"github.com/narfs/narfs/remote/storepath"
)

// The fetch benchmarks need a large NAR and minutes: NARFS_BENCH=1.
//
//	NARFS_BENCH=1 go test -run '^$' -bench 'FetchStages|FetchCold' -benchtime 3x ./remote/
//
// The NAR is `nix-store --dump`'s format of GOROOT (about 270 MB of
// binaries and sources), written by nar.Dump, compressed with the zstd
// and xz tools, and kept in $TMPDIR/narfs-bench-fetch between runs.
func benchGate(b *testing.B) {
	if os.Getenv("NARFS_BENCH") == "" {
		b.Skip("set NARFS_BENCH=1 to run the fetch benchmarks")
	}
}

type benchNARs struct {
	nar     string            // the NAR
	files   map[string]string // compression → compressed file
	narSize int64
	narHash []byte
}

// benchFetchFixture returns the "goroot" NAR (zstd -3 makes it 3.7
// times smaller: decoding bound) or the "mixed" one: 30 files of 8 MiB,
// each 64 KiB block 40 KiB of random bytes and 24 KiB of text, which
// zstd makes only ~1.5 times smaller, so the download matters.
func benchFetchFixture(b *testing.B, kind string) *benchNARs {
	dir := filepath.Join(os.TempDir(), "narfs-bench-fetch")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	f := &benchNARs{nar: filepath.Join(dir, kind+".nar"), files: map[string]string{}}
	if _, err := os.Stat(f.nar); err != nil {
		goroot, err := exec.Command("go", "env", "GOROOT").Output()
		if err != nil {
			b.Skipf("go env GOROOT: %v", err)
		}
		src := strings.TrimSpace(string(goroot))
		if kind == "mixed" {
			src = mixedTree(b)
		}
		out, err := os.Create(f.nar + ".tmp")
		if err != nil {
			b.Fatal(err)
		}
		if err := nar.Dump(out, src); err != nil {
			b.Fatal(err)
		}
		if err := out.Close(); err != nil {
			b.Fatal(err)
		}
		if err := os.Rename(f.nar+".tmp", f.nar); err != nil {
			b.Fatal(err)
		}
	}
	data, err := os.ReadFile(f.nar)
	if err != nil {
		b.Fatal(err)
	}
	sum := sha256.Sum256(data)
	f.narSize, f.narHash = int64(len(data)), sum[:]
	for algo, argv := range map[string][]string{
		"zstd": {"zstd", "-q", "-3", "-T0", "-c"},
		// Nix's default preset is 6; decoding speed hardly depends on
		// it, and -1 takes seconds instead of minutes to make.
		"xz": {"xz", "-1", "-T0", "-c"},
	} {
		path := f.nar + "." + algo
		f.files[algo] = path
		if _, err := os.Stat(path); err == nil {
			continue
		}
		if _, err := exec.LookPath(argv[0]); err != nil {
			b.Skipf("%s not installed", argv[0])
		}
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Stdin = bytes.NewReader(data)
		out, err := cmd.Output()
		if err != nil {
			b.Fatalf("%v: %v", argv, err)
		}
		if err := os.WriteFile(path, out, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	return f
}

func mixedTree(b *testing.B) string {
	dir := filepath.Join(b.TempDir(), "mixed")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	var seed [32]byte
	rng := rand.NewChaCha8(seed)
	text := bytes.Repeat([]byte("narfs mounts a Nix binary cache read-only. "), 24<<10/43+1)[:24<<10]
	block := make([]byte, 64<<10)
	for i := range 30 {
		var data []byte
		for range 8 << 20 / len(block) {
			rng.Read(block[:40<<10])
			copy(block[40<<10:], text)
			data = append(data, block...)
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%02d", i)), data, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	return dir
}

// benchCache makes a signed cache holding the fixture NAR compressed
// with algo, as the input-addressed path pathLib.
func benchCache(b *testing.B, f *benchNARs, algo string) string {
	dir := copyCache(b, "cache-none")
	ni := readNarinfo(b, dir, hashPartOf(pathLib))
	url := "nar/" + filepath.Base(f.files[algo])
	if err := os.Link(f.files[algo], filepath.Join(dir, url)); err != nil {
		copyFile(b, f.files[algo], filepath.Join(dir, url))
	}
	fi, err := os.Stat(filepath.Join(dir, url))
	if err != nil {
		b.Fatal(err)
	}
	ni.URL, ni.Compression, ni.FileHash, ni.FileSize = url, algo, nil, fi.Size()
	ni.NarHash = storepath.Hash{Algo: "sha256", Digest: f.narHash}
	ni.NarSize = f.narSize
	resign(b, ni)
	writeNarinfo(b, dir, ni)
	os.Remove(filepath.Join(dir, hashPartOf(pathLib)+".ls"))
	return dir
}

func mbps(b *testing.B, bytes int64) {
	b.ReportMetric(float64(bytes)*float64(b.N)/b.Elapsed().Seconds()/1e6, "MB/s")
}

// BenchmarkFetchStages measures each stage of a cold fetch on its own:
// the download (parallel and single stream, loopback and through
// linkshape.S3Region), the decompressor, the hash, and fetch.NAR of the
// uncompressed NAR into a local cache entry (parse+store, hashed beside
// it, as a fetch does). MB/s are of the stage's own input (compressed for
// the download and the decoder, the NAR for the rest).
func BenchmarkFetchStages(b *testing.B) {
	benchGate(b)
	f := benchFetchFixture(b, "goroot")
	narData, err := os.ReadFile(f.nar)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct{ kind, algo string }{{"goroot", "zstd"}, {"goroot", "xz"}, {"mixed", "zstd"}} {
		algo := c.algo
		f := benchFetchFixture(b, c.kind)
		narData, err := os.ReadFile(f.nar)
		if err != nil {
			b.Fatal(err)
		}
		comp, err := os.ReadFile(f.files[algo])
		if err != nil {
			b.Fatal(err)
		}
		b.Run("decode/"+c.kind+"."+algo, func(b *testing.B) {
			for b.Loop() {
				dec, err := compress.NewReader(algo, bytes.NewReader(comp))
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.Copy(io.Discard, dec); err != nil {
					b.Fatal(err)
				}
				dec.Close()
			}
			mbps(b, int64(len(comp)))
			b.ReportMetric(float64(len(narData))*float64(b.N)/b.Elapsed().Seconds()/1e6, "NAR-MB/s")
		})
	}
	b.Run("sha256", func(b *testing.B) {
		for b.Loop() {
			h := sha256.New()
			h.Write(narData)
			h.Sum(nil)
		}
		mbps(b, int64(len(narData)))
	})
	b.Run("extract", func(b *testing.B) {
		cache, err := localcache.Open(b.TempDir(), 4<<30, quietLogger())
		if err != nil {
			b.Fatal(err)
		}
		defer cache.Close()
		ni := &narinfo.NarInfo{URL: "nar/x.nar"}
		setNAR(ni, ni.URL, narData)
		p := &trust.Path{NarInfo: ni, Why: "benchmark"}
		for i := 0; b.Loop(); i++ {
			pend, err := cache.Begin()
			if err != nil {
				b.Fatal(err)
			}
			if _, _, err := fetch.NAR(context.Background(), fetch.Body{R: bytes.NewReader(narData)}, p, pend); err != nil {
				b.Fatal(err)
			}
			pend.Abort()
		}
		mbps(b, int64(len(narData)))
	})
	comp, err := os.ReadFile(benchFetchFixture(b, "mixed").files["zstd"])
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "obj"), comp, 0o644); err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	defer srv.Close()
	shaped, err := linkshape.Start(srv.URL, linkshape.S3Region)
	if err != nil {
		b.Fatal(err)
	}
	defer shaped.Close()
	for _, link := range []struct{ name, url string }{{"loopback", srv.URL}, {"s3region", shaped.URL()}} {
		be, err := backend.Open(context.Background(), mustParseURL(b, link.url), backend.Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer be.Close()
		b.Run("download/"+link.name+"/single", func(b *testing.B) {
			for b.Loop() {
				obj, err := be.Get(context.Background(), "obj")
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.Copy(io.Discard, obj.Body); err != nil {
					b.Fatal(err)
				}
				obj.Body.Close()
			}
			mbps(b, int64(len(comp)))
		})
		// The default, and other part sizes and counts for comparison.
		for _, v := range []struct {
			name string
			o    backend.ParallelOptions
		}{
			{"parallel", backend.ParallelOptions{}},
			{"parallel-1MiBx32", backend.ParallelOptions{MaxPart: 1 << 20, MaxConcurrency: 32, Budget: 32 << 20}},
			{"parallel-2MiBx16", backend.ParallelOptions{MaxPart: 2 << 20, MaxConcurrency: 16, Budget: 32 << 20}},
			{"parallel-4MiBx8", backend.ParallelOptions{MaxPart: 4 << 20, MaxConcurrency: 8, Budget: 32 << 20}},
		} {
			b.Run("download/"+link.name+"/"+v.name, func(b *testing.B) {
				for b.Loop() {
					r := backend.NewParallelReader(context.Background(), be, "obj", int64(len(comp)), v.o)
					if _, err := io.Copy(io.Discard, r); err != nil {
						b.Fatal(err)
					}
					r.Close()
				}
				mbps(b, int64(len(comp)))
			})
		}
	}
}

func mustParseURL(b *testing.B, raw string) *backend.StoreURL {
	u, err := backend.ParseStoreURL(raw)
	if err != nil {
		b.Fatal(err)
	}
	return u
}

// BenchmarkFetchCold materializes the large NAR into an empty local
// cache, whole fetch included (resolve excluded), over file://, http on
// loopback and http through linkshape.S3Region, single stream and
// parallel. MB/s are NAR bytes per second.
func BenchmarkFetchCold(b *testing.B) {
	benchGate(b)
	for _, c := range []struct{ kind, algo string }{{"mixed", "zstd"}, {"goroot", "zstd"}, {"goroot", "xz"}} {
		f := benchFetchFixture(b, c.kind)
		dir := benchCache(b, f, c.algo)
		srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
		defer srv.Close()
		shaped, err := linkshape.Start(srv.URL, linkshape.S3Region)
		if err != nil {
			b.Fatal(err)
		}
		defer shaped.Close()
		abs, _ := filepath.Abs(dir)
		for _, link := range []struct{ name, url string }{{"file", "file://" + abs}, {"loopback", srv.URL}, {"s3region", shaped.URL()}} {
			for _, single := range []bool{true, false} {
				mode := "parallel"
				if single {
					mode = "single"
				}
				b.Run(fmt.Sprintf("%s.%s/%s/%s", c.kind, c.algo, link.name, mode), func(b *testing.B) {
					for b.Loop() {
						cfg := trustedConfig(b)
						cfg.SingleStream = single
						s, err := openOne(context.Background(), link.url, cfg)
						if err != nil {
							b.Fatal(err)
						}
						p := mustResolve(b, s, pathLib)
						if _, err := s.materialize(context.Background(), p); err != nil {
							b.Fatal(err)
						}
						s.Close()
						os.RemoveAll(cfg.CacheDir)
					}
					mbps(b, f.narSize)
				})
			}
		}
	}
}
