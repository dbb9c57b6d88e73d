package compress

import (
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// maxStreamingHeap is the project's memory target for one decompressing
// stream (see doc.go).
const maxStreamingHeap = 64 << 20

// narLike is an endless deterministic stream that compresses about as well
// as a NAR of binaries: runs of repeated text among random bytes.
type narLike struct{ rng *rand.Rand }

func (g narLike) Read(p []byte) (int, error) {
	for i := 0; i < len(p); {
		if g.rng.IntN(4) == 0 {
			p[i] = byte(g.rng.Uint32())
			i++
			continue
		}
		i += copy(p[i:], "/nix/store/0mdqa9w1p6cmli6976v4wi0sw9r4-glibc-2.40/lib\x00"[g.rng.IntN(20):])
	}
	return len(p), nil
}

// compressedFile writes size bytes of narLike data compressed by argv to a
// temporary file, streaming, so the test's own heap stays small.
func compressedFile(t *testing.T, size int64, argv ...string) string {
	t.Helper()
	if _, err := exec.LookPath(argv[0]); err != nil {
		t.Skipf("%s not installed", argv[0])
	}
	path := filepath.Join(t.TempDir(), "in")
	out, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin = io.LimitReader(narLike{rand.New(rand.NewPCG(3, 4))}, size)
	cmd.Stdout = out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v: %v", argv, err)
	}
	return path
}

// Decoding must not buffer the stream: the live heap while streaming stays
// under the target however long the input is (here several times larger).
func TestStreamingHeapBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("compresses tens of MB")
	}
	for _, c := range []struct {
		algo string
		size int64
		argv []string
	}{
		{"zstd", 256 << 20, []string{"zstd", "-q", "-c"}},
		// Multi-block like Nix's parallel-compression, at a fast level.
		{"xz", 96 << 20, []string{"xz", "-2", "-T2", "--block-size=8MiB", "-c"}},
		{"gzip", 128 << 20, []string{"gzip", "-1", "-c"}},
	} {
		t.Run(c.algo, func(t *testing.T) {
			path := compressedFile(t, c.size, c.argv...)
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			rc, err := newReader(c.algo, f, false)
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			n, peak, err := drain(rc)
			if err != nil || n != c.size {
				t.Fatalf("decoded %d bytes, %v; want %d", n, err, c.size)
			}
			if peak > maxStreamingHeap {
				t.Errorf("peak live heap %d MiB while streaming %d MiB, want ≤ %d MiB", peak>>20, n>>20, maxStreamingHeap>>20)
			}
			t.Logf("peak live heap %.1f MiB", float64(peak)/(1<<20))
		})
	}
}
