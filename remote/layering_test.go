package remote_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The layering of the module's packages (issue 20): a package imports
// only packages of its own rank or lower, so the parts along the data
// path (tune → leaves → trust → upstream/fetch/pathstate → content →
// remote → front ends) never call back up. Every package of the module
// has a rank here: a new package fails TestLayering until it is given
// one.
var layerRank = map[string]int{
	// L0: constants only.
	"remote/internal/tune": 0,
	// L1: formats, clients and vocabularies that know nothing of a store.
	"nar":               1,
	"nar/compress":      1,
	"remote/storepath":  1,
	"remote/narinfo":    1,
	"remote/backend":    1,
	"remote/chunkindex": 1,
	"remote/localcache": 1,
	"remote/stats":      1,
	// L2: mechanisms over the leaves.
	"remote/blob":            2,
	"remote/internal/memo":   2,
	"remote/internal/flight": 2,
	"remote/internal/workq":  2,
	"remote/internal/layout": 2,
	// L3: what makes a path, an index or a listing trusted.
	"remote/internal/trust": 3,
	// L4: one binary cache, one NAR body, per-path state; never each
	// other (layerSiblings).
	"remote/internal/upstream":  4,
	"remote/internal/fetch":     4,
	"remote/internal/pathstate": 4,
	// L5: the local disk shared by every cache.
	"remote/internal/content": 5,
	// L6: the core's API.
	"remote": 6,
	// L7: its users. remote/upload is a tool of the CLI that builds on
	// the leaves only (layerUploadMax).
	"fs":               7,
	"remote/nixdaemon": 7,
	"remote/metrics":   7,
	"remote/upload":    7,
	"cmd/narfs":        7,
	// L8: test harnesses, above everything they test.
	"integration":                         8,
	"integration/linkshape":               8,
	"integration/linkshape/cmd/linkshape": 8,
}

// layerSiblings are the L4 parts: none imports another, directly or not.
var layerSiblings = []string{"remote/internal/upstream", "remote/internal/fetch", "remote/internal/pathstate"}

// layerUploadMax is the highest rank remote/upload may import: it reads
// and writes caches with the leaves, never through the core.
const layerUploadMax = 2

// fsAllowed are the module packages fs may import directly (besides the
// standard library and go-fuse): the core's API and the NAR vocabulary.
var fsAllowed = []string{"remote", "nar"}

const goFUSE = "github.com/hanwen/go-fuse/v2"

// listedPackage is what `go list -json` says of a package.
type listedPackage struct {
	ImportPath string
	Standard   bool
	Module     *struct{ Path string }
	Imports    []string
	Deps       []string
	Error      *struct{ Err string }
}

// modulePackages lists the module's packages (non-test imports) with
// `go list -deps -json`, and which import paths are the standard
// library's.
func modulePackages(t *testing.T) (module string, pkgs map[string]*listedPackage, std map[string]bool) {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go is not on PATH: cannot list the module's imports")
	}
	root := moduleRoot(t)
	cmd := exec.Command(goTool, "list", "-deps", "-json=ImportPath,Standard,Module,Imports,Deps,Error", "./...")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.Bytes())
	}
	mod := exec.Command(goTool, "list", "-m")
	mod.Dir = root
	m, err := mod.Output()
	if err != nil {
		t.Fatalf("go list -m: %v", err)
	}
	module = strings.TrimSpace(string(m))
	pkgs = map[string]*listedPackage{}
	std = map[string]bool{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p listedPackage
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		if p.Error != nil {
			t.Fatalf("go list: %s: %s", p.ImportPath, p.Error.Err)
		}
		if p.Standard {
			std[p.ImportPath] = true
		}
		if p.Module != nil && p.Module.Path == module {
			pkgs[p.ImportPath] = &p
		}
	}
	if len(pkgs) == 0 {
		t.Fatalf("go list found no package of module %s in %s", module, root)
	}
	return module, pkgs, std
}

// rel is path relative to the module ("" for the root); ok is false for
// a path outside it.
func rel(module, path string) (string, bool) {
	if path == module {
		return "", true
	}
	r, ok := strings.CutPrefix(path, module+"/")
	return r, ok
}

// TestLayering checks that no package imports one of a higher rank, and
// that the L4 parts never import each other.
func TestLayering(t *testing.T) {
	module, pkgs, _ := modulePackages(t)
	for _, path := range sortedKeys(pkgs) {
		p := pkgs[path]
		name, _ := rel(module, path)
		rank, ok := layerRank[name]
		if !ok {
			t.Errorf("%s has no rank: add it to layerRank in remote/layering_test.go", name)
			continue
		}
		for _, imp := range p.Imports {
			in, ok := rel(module, imp)
			if !ok {
				continue
			}
			if r, ok := layerRank[in]; ok && r > rank {
				t.Errorf("%s (L%d) imports %s (L%d): a lower part never imports a higher one", name, rank, in, r)
			}
		}
	}
	for _, a := range layerSiblings {
		p := pkgs[module+"/"+a]
		if p == nil {
			t.Errorf("%s: not found in the module", a)
			continue
		}
		for _, b := range layerSiblings {
			if a != b && slices.Contains(p.Deps, module+"/"+b) {
				t.Errorf("%s depends on %s: the L4 parts never import each other", a, b)
			}
		}
	}
}

// TestLayeringFS checks that fs imports only the core's API, the NAR
// vocabulary, go-fuse and the standard library.
func TestLayeringFS(t *testing.T) {
	module, pkgs, std := modulePackages(t)
	p := pkgs[module+"/fs"]
	if p == nil {
		t.Fatal("fs: not found in the module")
	}
	for _, imp := range p.Imports {
		if std[imp] || imp == goFUSE || strings.HasPrefix(imp, goFUSE+"/") {
			continue
		}
		if in, ok := rel(module, imp); ok && slices.Contains(fsAllowed, in) {
			continue
		}
		t.Errorf("fs imports %s: fs imports only %v, go-fuse and the standard library", imp, fsAllowed)
	}
}

// TestLayeringUpload checks that remote/upload stays below the core: it
// never depends on remote, and imports nothing above layerUploadMax.
func TestLayeringUpload(t *testing.T) {
	module, pkgs, _ := modulePackages(t)
	p := pkgs[module+"/remote/upload"]
	if p == nil {
		t.Fatal("remote/upload: not found in the module")
	}
	if slices.Contains(p.Deps, module+"/remote") {
		t.Errorf("remote/upload depends on remote: upload builds on the leaves, never on the core")
	}
	for _, imp := range p.Imports {
		in, ok := rel(module, imp)
		if !ok {
			continue
		}
		if r, ok := layerRank[in]; ok && r > layerUploadMax {
			t.Errorf("remote/upload imports %s (L%d): upload imports L0–L%d only", in, r, layerUploadMax)
		}
	}
}

// TestLayeringNoFUSEBelowFS checks that neither nar nor the core depends
// on go-fuse or on fs: the core serves every front end alike.
func TestLayeringNoFUSEBelowFS(t *testing.T) {
	module, pkgs, _ := modulePackages(t)
	for _, name := range []string{"nar", "remote"} {
		p := pkgs[module+"/"+name]
		if p == nil {
			t.Errorf("%s: not found in the module", name)
			continue
		}
		for _, d := range p.Deps {
			if d == goFUSE || strings.HasPrefix(d, goFUSE+"/") || d == module+"/fs" {
				t.Errorf("%s depends on %s", name, d)
			}
		}
	}
}

// moduleRoot is the directory of the go.mod above this package's.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		up := filepath.Dir(dir)
		if up == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = up
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
