package compress

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// compressors are the C command lines that write each algorithm's format.
var compressors = map[string][]string{
	"xz":    {"xz", "-c"},
	"lzma":  {"xz", "-c", "--format=lzma"},
	"zstd":  {"zstd", "-c", "-q"},
	"bzip2": {"bzip2", "-c"},
	"br":    {"brotli", "-c"},
	"gzip":  {"gzip", "-c"},
	"lz4":   {"lz4", "-c", "-q"},
}

// compressedAlgos lists every supported algorithm except none, sorted.
var compressedAlgos = []string{"br", "bzip2", "gzip", "lz4", "lzma", "xz", "zstd"}

// impl is one way of decoding an algorithm: a child tool or pure Go.
type impl struct {
	name string
	open func(io.Reader) (io.ReadCloser, error)
}

// impls returns every decoder NewReader may pick for algo here: each
// installed tool in its list, then the pure-Go fallback.
func impls(algo string) []impl {
	a := algorithms[canonical(algo)]
	var out []impl
	for _, tool := range a.tools {
		argv := tool()
		if _, err := exec.LookPath(argv[0]); err != nil {
			continue
		}
		out = append(out, impl{argv[0], func(r io.Reader) (io.ReadCloser, error) {
			return startTool(argv, r)
		}})
	}
	return append(out, impl{"go", func(r io.Reader) (io.ReadCloser, error) {
		return a.pureGo(r), nil
	}})
}

// sample returns n bytes of NAR-like data: text with repeats, so every
// compressor has something to do, and deterministic.
func sample(n int) []byte {
	words := []string{"nix", "store", "/nix/store/", "lib", "share", "\x00\x00\x00", "ELF", "regular", "contents"}
	rng := rand.New(rand.NewPCG(1, 2))
	var b bytes.Buffer
	for b.Len() < n {
		b.WriteString(words[rng.IntN(len(words))])
		b.WriteByte(byte(rng.IntN(256)))
	}
	return b.Bytes()[:n]
}

// compressWithTool compresses data with the C tool for algo, skipping the
// test if the tool is missing.
func compressWithTool(t testing.TB, algo string, data []byte) []byte {
	t.Helper()
	argv := compressors[algo]
	if _, err := exec.LookPath(argv[0]); err != nil {
		t.Skipf("%s not installed", argv[0])
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin = bytes.NewReader(data)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%v: %v", argv, err)
	}
	return out
}

// decode reads all of in through p.
func (p impl) decode(t *testing.T, in io.Reader) ([]byte, error) {
	t.Helper()
	rc, err := p.open(in)
	if err != nil {
		t.Fatalf("%s: %v", p.name, err)
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// decode reads all of in through NewReader.
func decode(t *testing.T, algo string, in io.Reader) ([]byte, error) {
	t.Helper()
	rc, err := NewReader(algo, in)
	if err != nil {
		t.Fatalf("NewReader(%q): %v", algo, err)
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func TestRoundTrip(t *testing.T) {
	data := sample(300 << 10)
	for _, algo := range compressedAlgos {
		for _, p := range impls(algo) {
			t.Run(algo+"/"+p.name, func(t *testing.T) {
				comp := compressWithTool(t, algo, data)
				got, err := p.decode(t, bytes.NewReader(comp))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, data) {
					t.Fatalf("decoded %d bytes, want the %d bytes compressed", len(got), len(data))
				}
			})
		}
	}
}

func TestNone(t *testing.T) {
	data := sample(1000)
	got, err := decode(t, "none", bytes.NewReader(data))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("none: got %d bytes, %v; want the input back", len(got), err)
	}
}

// Nix ≥2.35 writes zstd as independent 16 MiB frames, and parallel xz or
// pbzip2-style tools write concatenated streams: all must decode whole.
func TestConcatenatedStreams(t *testing.T) {
	a, b := sample(70<<10), sample(50 << 10)[1:]
	for _, algo := range compressedAlgos {
		if algo == "br" || algo == "lzma" {
			continue // neither format has concatenation
		}
		for _, p := range impls(algo) {
			t.Run(algo+"/"+p.name, func(t *testing.T) {
				comp := append(compressWithTool(t, algo, a), compressWithTool(t, algo, b)...)
				got, err := p.decode(t, bytes.NewReader(comp))
				if err != nil {
					t.Fatal(err)
				}
				if want := append(append([]byte{}, a...), b...); !bytes.Equal(got, want) {
					t.Fatalf("decoded %d bytes, want %d", len(got), len(want))
				}
			})
		}
	}
}

func TestTruncatedInputFails(t *testing.T) {
	data := sample(300 << 10)
	for _, algo := range compressedAlgos {
		for _, p := range impls(algo) {
			t.Run(algo+"/"+p.name, func(t *testing.T) {
				comp := compressWithTool(t, algo, data)
				for _, cut := range []int{0, 1, 10, len(comp) / 2, len(comp) - 1} {
					got, err := p.decode(t, bytes.NewReader(comp[:cut]))
					if err == nil {
						t.Errorf("cut at %d of %d: decoded %d bytes and no error", cut, len(comp), len(got))
					}
				}
			})
		}
	}
}

func TestGarbageInputFails(t *testing.T) {
	garbage := sample(64 << 10)
	for _, algo := range compressedAlgos {
		for _, p := range impls(algo) {
			t.Run(algo+"/"+p.name, func(t *testing.T) {
				if _, err := p.decode(t, bytes.NewReader(garbage)); err == nil {
					t.Error("garbage decoded without error")
				}
			})
		}
	}
}

// A flipped byte in the middle must not go unnoticed: every format here
// has a checksum over the data (lz4 with the CLI's default content checksum).
func TestCorruptInputFails(t *testing.T) {
	data := sample(300 << 10)
	for _, algo := range compressedAlgos {
		for _, p := range impls(algo) {
			t.Run(algo+"/"+p.name, func(t *testing.T) {
				comp := compressWithTool(t, algo, data)
				comp[len(comp)/2] ^= 0x55
				got, err := p.decode(t, bytes.NewReader(comp))
				if err == nil && !bytes.Equal(got, data) {
					t.Errorf("corrupt input decoded to %d wrong bytes without error", len(got))
				}
			})
		}
	}
}

// errInput is returned by failingReader after its data.
var errInput = errors.New("connection reset by test")

type failingReader struct{ r io.Reader }

func (f failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		err = errInput
	}
	return n, err
}

func TestInputErrorSurfaces(t *testing.T) {
	data := sample(300 << 10)
	for _, algo := range append([]string{"none"}, compressedAlgos...) {
		for _, p := range impls(algo) {
			t.Run(algo+"/"+p.name, func(t *testing.T) {
				comp := data
				if algo != "none" {
					comp = compressWithTool(t, algo, data)
				}
				_, err := p.decode(t, failingReader{bytes.NewReader(comp[:len(comp)/2])})
				if !errors.Is(err, errInput) {
					t.Errorf("got %v, want the input's error", err)
				}
			})
		}
	}
}

func TestNames(t *testing.T) {
	data := sample(10 << 10)
	t.Run("empty means bzip2", func(t *testing.T) {
		got, err := decode(t, "", bytes.NewReader(compressWithTool(t, "bzip2", data)))
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("got %d bytes, %v", len(got), err)
		}
	})
	t.Run("x-gzip means gzip", func(t *testing.T) {
		got, err := decode(t, "x-gzip", bytes.NewReader(compressWithTool(t, "gzip", data)))
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("got %d bytes, %v", len(got), err)
		}
	})
	for _, name := range []string{"lzop", "grzip", "lrzip", "compress", "brotli", "zst", "XZ", "gzip "} {
		if Supported(name) {
			t.Errorf("Supported(%q) = true", name)
		}
		rc, err := NewReader(name, strings.NewReader(""))
		if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), fmt.Sprintf("%q", name)) {
			t.Errorf("NewReader(%q) = %v, %v; want ErrUnsupported naming it", name, rc, err)
		}
	}
	for _, name := range []string{"", "none", "xz", "zstd", "bzip2", "br", "gzip", "x-gzip", "lz4", "lzma"} {
		if !Supported(name) {
			t.Errorf("Supported(%q) = false", name)
		}
	}
}

// settleGoroutines waits for goroutines to drop to at most n and returns
// the final count; goroutines that end asynchronously need a moment.
func settleGoroutines(n int) int {
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	return runtime.NumGoroutine()
}

func TestCloseBeforeEOF(t *testing.T) {
	data := sample(4 << 20)
	for _, algo := range compressedAlgos {
		for _, p := range impls(algo) {
			t.Run(algo+"/"+p.name, func(t *testing.T) {
				comp := compressWithTool(t, algo, data)
				before := runtime.NumGoroutine()
				rc, err := p.open(bytes.NewReader(comp))
				if err != nil {
					t.Fatal(err)
				}
				if _, err := io.ReadFull(rc, make([]byte, 1000)); err != nil {
					t.Fatal(err)
				}
				if err := rc.Close(); err != nil {
					t.Fatal(err)
				}
				if tr, ok := rc.(*toolReader); ok && tr.cmd.ProcessState == nil {
					t.Error("child process not reaped after Close")
				}
				if n, err := rc.Read(make([]byte, 10)); n != 0 || err == nil {
					t.Errorf("Read after Close = %d, %v", n, err)
				}
				if after := settleGoroutines(before); after > before {
					t.Errorf("%d goroutines after Close, %d before", after, before)
				}
			})
		}
	}
}

// The tool path must really run the tool when it is installed, or the
// "tool" subtests would silently test the pure-Go decoder twice.
func TestToolPathUsesTool(t *testing.T) {
	for algo, a := range algorithms {
		if len(a.tools) == 0 {
			continue
		}
		if _, err := exec.LookPath(a.tools[len(a.tools)-1]()[0]); err != nil {
			continue
		}
		rc, err := NewReader(algo, strings.NewReader(""))
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := rc.(*toolReader); !ok {
			t.Errorf("%s: got %T, want a child process", algo, rc)
		}
		rc.Close()
	}
}

// An *os.File input goes straight to the child's stdin: the same promises
// hold on that path.
func TestFileInput(t *testing.T) {
	data := sample(2 << 20)
	for _, algo := range compressedAlgos {
		t.Run(algo, func(t *testing.T) {
			comp := compressWithTool(t, algo, data)
			open := func(b []byte) *os.File {
				path := filepath.Join(t.TempDir(), "in")
				if err := os.WriteFile(path, b, 0o644); err != nil {
					t.Fatal(err)
				}
				f, err := os.Open(path)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { f.Close() })
				return f
			}
			got, err := decode(t, algo, open(comp))
			if err != nil || !bytes.Equal(got, data) {
				t.Errorf("whole file: %d bytes, %v", len(got), err)
			}
			if got, err := decode(t, algo, open(comp[:len(comp)/2])); err == nil {
				t.Errorf("truncated file: %d bytes and no error", len(got))
			}
			rc, err := NewReader(algo, open(comp))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(rc, make([]byte, 1000)); err != nil {
				t.Fatal(err)
			}
			rc.Close()
			if tr, ok := rc.(*toolReader); ok && tr.cmd.ProcessState == nil {
				t.Error("child process not reaped after Close")
			}
		})
	}
}

// Without the C tools on PATH NewReader falls back to pure Go.
func TestFallbackWithoutTools(t *testing.T) {
	data := sample(100 << 10)
	comp := map[string][]byte{}
	for _, algo := range []string{"xz", "lzma", "bzip2"} {
		comp[algo] = compressWithTool(t, algo, data)
	}
	t.Setenv("PATH", t.TempDir())
	for algo, c := range comp {
		rc, err := NewReader(algo, bytes.NewReader(c))
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := rc.(*toolReader); ok {
			t.Errorf("%s: started a tool with an empty PATH", algo)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s: decoded %d bytes, %v", algo, len(got), err)
		}
	}
}
