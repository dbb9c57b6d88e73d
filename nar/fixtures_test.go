package nar

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// treeDir holds the mktree.sh trees, created once for the whole test run.
var treeDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "nar-trees-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if out, err := exec.Command("bash", "testdata/mktree.sh", dir).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "mktree.sh: %v\n%s", err, out)
		os.Exit(1)
	}
	treeDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const fixtureDir = "testdata/nix"

type storePath struct {
	Base string // <hash>-<name>
	Kind string // "ca" (mktree.sh tree) or "ia" (derivation output)
}

func (p storePath) Name() string { return p.Base[33:] }
func (p storePath) Hash() string { return p.Base[:32] }

func fixturePaths(t testing.TB) []storePath {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(fixtureDir, "paths.txt"))
	if err != nil {
		t.Fatal(err)
	}
	var ps []storePath
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 || strings.HasPrefix(line, "#") {
			continue
		}
		ps = append(ps, storePath{f[0], f[1]})
	}
	if len(ps) == 0 {
		t.Fatal("no store paths in paths.txt")
	}
	return ps
}

func caches(t testing.TB) []string {
	t.Helper()
	ds, err := filepath.Glob(filepath.Join(fixtureDir, "cache-*"))
	if err != nil || len(ds) < 8 {
		t.Fatalf("fixture caches: %v %v", ds, err)
	}
	return ds
}

// narinfoFields returns the "Key: value" pairs of a narinfo (enough for
// these tests; the real parser lives elsewhere).
func narinfoFields(t testing.TB, path string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ": ")
		if ok {
			m[k] = v
		}
	}
	return m
}

// decompressedNAR returns the uncompressed NAR of the narinfo at path,
// using the reference C tools.
func decompressedNAR(t testing.TB, cache, narinfo string) []byte {
	t.Helper()
	f := narinfoFields(t, narinfo)
	raw, err := os.ReadFile(filepath.Join(cache, f["URL"]))
	if err != nil {
		t.Fatal(err)
	}
	tool := map[string]string{"xz": "xz", "zstd": "zstd", "bzip2": "bzip2", "gzip": "gzip", "br": "brotli"}[f["Compression"]]
	if f["Compression"] == "none" {
		return raw
	}
	if tool == "" {
		t.Fatalf("%s: unexpected compression %q", narinfo, f["Compression"])
	}
	cmd := exec.Command(tool, "-dc")
	cmd.Stdin = bytes.NewReader(raw)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s -dc %s: %v", tool, f["URL"], err)
	}
	return out
}

// dumpSum returns the "<hex sha256> <size>" recorded for nix-store --dump.
func dumpSum(t testing.TB, base string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fixtureDir, "dumps", base+".nar.sha256"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}
