package remote

import (
	"context"
	"crypto/sha256"
	"fmt"
	"go/build"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/narfs/narfs/remote/narinfo"
	"github.com/narfs/narfs/remote/storepath"
)

// BenchmarkResolveS3 measures narinfo lookups per second against a real
// S3 server (versitygw on 127.0.0.1) with 64 parallel callers: "uncached"
// asks the server every time (distinct paths, a one-entry narinfo cache),
// "cached" answers from memory after a warm-up.
func BenchmarkResolveS3(b *testing.B) {
	const paths = 4096
	endpoint, root := startVersityGWBench(b)
	bucket := filepath.Join(root, "cache")
	if err := os.MkdirAll(bucket, 0o755); err != nil {
		b.Fatal(err)
	}
	os.WriteFile(filepath.Join(bucket, "nix-cache-info"), []byte("StoreDir: /nix/store\n"), 0o644)
	sk := testSecretKey(b)
	bases := make([]string, paths)
	for i := range bases {
		digest := sha256.Sum256(fmt.Appendf(nil, "narfs-bench-%d", i))
		sp := storepath.StorePath{Hash: storepath.EncodeNix32(digest[:20]), Name: fmt.Sprintf("bench-%d", i)}
		ni := &narinfo.NarInfo{
			StorePath: sp, StoreDir: storepath.DefaultStoreDir, URL: "nar/" + sp.Hash + ".nar", Compression: "none",
			NarHash: storepath.Hash{Algo: "sha256", Digest: digest[:]}, NarSize: 120,
		}
		sig, err := sk.Sign(ni)
		if err != nil {
			b.Fatal(err)
		}
		ni.Sigs = []string{sig}
		if err := os.WriteFile(filepath.Join(bucket, sp.Hash+".narinfo"), ni.Marshal(), 0o644); err != nil {
			b.Fatal(err)
		}
		bases[i] = sp.String()
	}
	b.Setenv("AWS_ACCESS_KEY_ID", benchAccess)
	b.Setenv("AWS_SECRET_ACCESS_KEY", benchSecret)
	url := "s3://cache?endpoint=" + endpoint

	run := func(b *testing.B, cfg Config, warm bool) {
		cfg.CacheDir = b.TempDir()
		cfg.Logger = quietLogger()
		s, err := openOne(context.Background(), url, cfg)
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		if warm {
			for _, base := range bases {
				mustResolve(b, s, base)
			}
		}
		var next atomic.Int64
		// RunParallel starts parallelism × GOMAXPROCS goroutines.
		b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				base := bases[next.Add(1)%paths]
				if _, err := s.Resolve(context.Background(), base); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lookups/s")
	}
	keys := testPublicKeys(b)
	b.Run("uncached", func(b *testing.B) {
		run(b, Config{TrustedKeys: keys, RequireSigs: true, NarinfoCacheSize: 1}, false)
	})
	b.Run("cached", func(b *testing.B) {
		run(b, Config{TrustedKeys: keys, RequireSigs: true}, true)
	})
}

const (
	benchAccess = "narfsbenchaccess"
	benchSecret = "narfsbenchsecret0123456789"
)

// startVersityGWBench runs versitygw (posix backend) on a free port.
func startVersityGWBench(b *testing.B) (endpoint, root string) {
	b.Helper()
	bin := filepath.Join(build.Default.GOPATH, "bin", "versitygw")
	if _, err := os.Stat(bin); err != nil {
		b.Skip("versitygw not installed (make deps)")
	}
	root = b.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(bin, "--port", addr, "--quiet", "posix", root)
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+benchAccess, "ROOT_SECRET_KEY="+benchSecret)
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for deadline := time.Now().Add(20 * time.Second); ; {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("versitygw did not start: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return "http://" + addr, root
}
