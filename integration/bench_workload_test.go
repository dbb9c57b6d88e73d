package integration

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// benchVersion names the workload; change it when benchWorkloadNix changes
// meaningfully (the expression's hash keys the cache directory anyway).
const benchVersion = "v1"

// benchRoot is where workloads and their caches persist between runs.
const benchRoot = "/var/tmp/narfs-bench"

// benchCompressions are the caches the benchmark serves, with the
// parameters Nix writes them with.
var benchCompressions = []struct{ name, params string }{
	{"zstd", "compression=zstd"},
	{"xz", "compression=xz&parallel-compression=true"},
	{"none", "compression=none"},
}

// workload is a closure made by real Nix and its signed caches.
type workload struct {
	Dir        string            `json:"dir"`
	PublicKey  string            `json:"public_key"`
	Root       string            `json:"root"`        // base name; references every other path
	All        []string          `json:"all"`         // base names of the closure
	SmallFile  string            `json:"small_file"`  // relative to the store: root's README
	BigPath    string            `json:"big_path"`    // base name of the ≥ 200 MB path
	BigFile    string            `json:"big_file"`    // relative to the store
	ManyFiles  string            `json:"many_files"`  // base name of the path with most files
	SharedFile string            `json:"shared_file"` // relative: a .so that 64 readers share
	Caches     map[string]string `json:"caches"`      // compression → cache directory
	Files      int               `json:"files"`       // regular files in the closure
	FileBytes  int64             `json:"file_bytes"`  // their total size
	NarBytes   map[string]int64  `json:"nar_bytes"`   // compression → sum of FileSize
	BuildTime  string            `json:"build_time"`  // how long making it took
}

// benchWorkloadNix builds ~22 input-addressed paths from files already on
// the machine: Go sources (many small text files), shared libraries, the Go
// toolchain binaries and one ≥ 200 MB library (two libLLVMs concatenated).
// References come from each output naming its dependencies.
const benchWorkloadNix = `
let
  sys = builtins.currentSystem;
  mk = name: deps: script: derivation {
    name = "narfs-bench-${name}"; system = sys; builder = "/bin/sh"; PATH = "/bin:/usr/bin";
    inherit deps;
    args = [ "-c" "set -e; mkdir -p $out/nix-support; for d in $deps; do echo $d; done > $out/nix-support/deps; ${script}" ];
  };
  libs = n: mk "libs-${toString n}" [] "mkdir -p $out/lib; find /usr/lib/x86_64-linux-gnu -maxdepth 1 -type f -name '*.so.*' -size +200k -size -4M | sort | awk 'NR %% 6 == ${toString n}' | xargs -I{} cp {} $out/lib/";
  libsA = libs 0; libsB = libs 1; libsC = libs 2;
  goSrc = d: mk "go-${baseNameOf d}" [ libsA ] "mkdir -p $out/share/go; cp -r /usr/local/go/${d} $out/share/go/";
  srcs = map goSrc [ "src/internal" "src/runtime" "src/crypto" "src/go" "src/net" "src/syscall" "src/math" "src/os"
                     "src/encoding" "src/image" "src/debug" "src/archive" "src/compress" "src/vendor" "test" ];
  big = mk "llvm" [ libsB ] "mkdir -p $out/lib; cat /usr/lib/x86_64-linux-gnu/libLLVM-15.so.1 /usr/lib/x86_64-linux-gnu/libLLVM-14.so.1 > $out/lib/libLLVM-big.so";
  gobin = mk "gobin" [ libsC ] "mkdir -p $out/bin; cp /usr/local/go/bin/go /usr/local/go/bin/gofmt $out/bin/";
  app = mk "app" [ big libsB libsC gobin ] "mkdir -p $out/bin; printf '#!/bin/sh\\necho app\\n' > $out/bin/app; chmod +x $out/bin/app";
  root = mk "root-%s" ([ app big libsA libsB libsC gobin ] ++ srcs) "mkdir -p $out/share/doc; echo 'narfs benchmark root' > $out/share/doc/README";
in { inherit root big libsA; manyFiles = builtins.elemAt srcs 14; }
`

var (
	benchWorkloadOnce sync.Once
	benchWorkloadVal  *workload
	benchWorkloadErr  error
)

// benchWorkload returns the workload, building it on first use and reusing
// the persisted one (same expression, store paths still valid) afterwards.
func benchWorkload(t *testing.T) *workload {
	t.Helper()
	benchWorkloadOnce.Do(func() { benchWorkloadVal, benchWorkloadErr = loadOrBuildWorkload(t) })
	if benchWorkloadErr != nil {
		t.Fatalf("benchmark workload: %v", benchWorkloadErr)
	}
	return benchWorkloadVal
}

func loadOrBuildWorkload(t *testing.T) (*workload, error) {
	expr := fmt.Sprintf(benchWorkloadNix, benchVersion)
	sum := sha256.Sum256([]byte(expr))
	dir := filepath.Join(benchRoot, benchVersion+"-"+hex.EncodeToString(sum[:6]))
	manifest := filepath.Join(dir, "manifest.json")
	if data, err := os.ReadFile(manifest); err == nil {
		w := &workload{}
		if err := json.Unmarshal(data, w); err == nil {
			if _, err := sh(dir, "nix-store", "--check-validity", "/nix/store/"+w.Root); err == nil {
				t.Logf("reusing workload %s (built in %s)", dir, w.BuildTime)
				return w, nil
			}
		}
	}
	start := time.Now()
	os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	w := &workload{Dir: dir, Caches: map[string]string{}, NarBytes: map[string]int64{}}
	if err := os.WriteFile(filepath.Join(dir, "workload.nix"), []byte(expr), 0o644); err != nil {
		return nil, err
	}
	out, err := sh(dir, "nix-build", "--no-out-link", "workload.nix", "-A", "root", "-A", "big", "-A", "libsA", "-A", "manyFiles")
	if err != nil {
		return nil, err
	}
	built := strings.Fields(out)
	if len(built) != 4 {
		return nil, fmt.Errorf("nix-build printed %q", out)
	}
	w.Root, w.BigPath, w.ManyFiles = filepath.Base(built[0]), filepath.Base(built[1]), filepath.Base(built[3])
	w.SmallFile = w.Root + "/share/doc/README"
	w.BigFile = w.BigPath + "/lib/libLLVM-big.so"
	libs, err := os.ReadDir(filepath.Join(built[2], "lib"))
	if err != nil || len(libs) == 0 {
		return nil, fmt.Errorf("libs path %s: %v", built[2], err)
	}
	// The largest library of libs-0: big enough that 64 readers overlap.
	var best int64
	for _, e := range libs {
		if fi, err := e.Info(); err == nil && fi.Size() > best {
			best, w.SharedFile = fi.Size(), filepath.Base(built[2])+"/lib/"+e.Name()
		}
	}
	req, err := sh(dir, "nix-store", "-qR", built[0])
	if err != nil {
		return nil, err
	}
	for _, p := range strings.Fields(req) {
		w.All = append(w.All, filepath.Base(p))
		filepath.WalkDir(p, func(_ string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				if fi, err := d.Info(); err == nil {
					w.Files++
					w.FileBytes += fi.Size()
				}
			}
			return nil
		})
	}
	if _, err := sh(dir, "nix-store", "--generate-binary-cache-key", "narfs-bench-1", "sk", "pk"); err != nil {
		return nil, err
	}
	pk, _ := os.ReadFile(filepath.Join(dir, "pk"))
	w.PublicKey = strings.TrimSpace(string(pk))
	var wg sync.WaitGroup
	errs := make([]error, len(benchCompressions))
	for i, c := range benchCompressions {
		cache := filepath.Join(dir, "cache-"+c.name)
		w.Caches[c.name] = cache
		wg.Add(1)
		go func() {
			defer wg.Done()
			t0 := time.Now()
			errs[i] = nixCopyTo(dir, fmt.Sprintf("file://%s?%s&write-nar-listing=true&secret-key=%s", cache, c.params, filepath.Join(dir, "sk")), built[0])
			t.Logf("cache %s written in %s", c.name, time.Since(t0).Round(time.Second))
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	for _, c := range benchCompressions {
		n, err := sumNarinfoField(w.Caches[c.name], "FileSize")
		if err != nil {
			return nil, err
		}
		w.NarBytes[c.name] = n
	}
	w.BuildTime = time.Since(start).Round(time.Second).String()
	data, _ := json.MarshalIndent(w, "", "  ")
	if err := os.WriteFile(manifest, data, 0o644); err != nil {
		return nil, err
	}
	t.Logf("built workload %s in %s: %d paths, %d files, %d bytes", dir, w.BuildTime, len(w.All), w.Files, w.FileBytes)
	return w, nil
}

// sumNarinfoField adds up an integer field over a cache's narinfos.
func sumNarinfoField(cache, field string) (int64, error) {
	files, err := filepath.Glob(filepath.Join(cache, "*.narinfo"))
	if err != nil {
		return 0, err
	}
	var total int64
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return 0, err
		}
		for _, line := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, field+": "); ok {
				var n int64
				fmt.Sscan(v, &n)
				total += n
			}
		}
	}
	return total, nil
}
