package remote_test

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The size limits of issue 20: the core stays a set of parts, each small
// enough to read whole, and package remote an API, not a toolbox.
const (
	maxStructFields = 25  // fields of one struct type in the core
	maxTypeMethods  = 35  // methods of one type in the core, unexported included
	maxFileLines    = 400 // lines of one non-test Go file in the module
	maxRemoteExport = 40  // exported identifiers of package remote
)

// parsedFile is one non-test Go file of the module.
type parsedFile struct {
	rel  string // slash-separated, relative to the module root
	pkg  string // directory, relative to the module root
	f    *ast.File
	size int // lines
}

// moduleFiles parses every non-test Go file of the module, skipping
// testdata, hidden and underscore directories (what the go tool skips).
func moduleFiles(t *testing.T) []parsedFile {
	t.Helper()
	root := moduleRoot(t)
	fset := token.NewFileSet()
	var files []parsedFile
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != root && (name == "testdata" || name == "vendor" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		f, err := parser.ParseFile(fset, path, src, parser.ParseComments)
		if err != nil {
			return err
		}
		r, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		r = filepath.ToSlash(r)
		lines := bytes.Count(src, []byte("\n"))
		if len(src) > 0 && src[len(src)-1] != '\n' {
			lines++
		}
		files = append(files, parsedFile{rel: r, pkg: pathDir(r), f: f, size: lines})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func pathDir(rel string) string {
	i := strings.LastIndexByte(rel, '/')
	if i < 0 {
		return ""
	}
	return rel[:i]
}

// inCore reports whether a file belongs to package remote or to one of
// remote/internal/*: the core the type limits apply to.
func inCore(pkg string) bool {
	return pkg == "remote" || strings.HasPrefix(pkg, "remote/internal/")
}

func coreFiles(t *testing.T) []parsedFile {
	var core []parsedFile
	for _, f := range moduleFiles(t) {
		if inCore(f.pkg) {
			core = append(core, f)
		}
	}
	if len(core) == 0 {
		t.Fatal("no file of package remote found")
	}
	return core
}

// TestLimitStructFields: no struct type of the core has more than
// maxStructFields fields (an embedded field counts as one).
func TestLimitStructFields(t *testing.T) {
	for _, pf := range coreFiles(t) {
		ast.Inspect(pf.f, func(n ast.Node) bool {
			ts, ok := n.(*ast.TypeSpec)
			if !ok {
				return true
			}
			st, ok := ts.Type.(*ast.StructType)
			if !ok {
				return true
			}
			if n := fieldCount(st.Fields); n > maxStructFields {
				t.Errorf("%s: struct %s has %d fields (limit %d)", pf.rel, ts.Name.Name, n, maxStructFields)
			}
			return true
		})
	}
}

func fieldCount(fl *ast.FieldList) int {
	n := 0
	for _, f := range fl.List {
		n += max(len(f.Names), 1)
	}
	return n
}

// TestLimitMethods: no type of the core has more than maxTypeMethods
// methods, unexported ones included.
func TestLimitMethods(t *testing.T) {
	methods := map[string]int{} // "pkg.Type"
	for _, pf := range coreFiles(t) {
		for _, d := range pf.f.Decls {
			if fd, ok := d.(*ast.FuncDecl); ok && fd.Recv != nil {
				methods[pf.pkg+"."+receiverName(fd)]++
			}
		}
	}
	for _, typ := range sortedKeys(methods) {
		if n := methods[typ]; n > maxTypeMethods {
			t.Errorf("%s has %d methods (limit %d)", typ, n, maxTypeMethods)
		}
	}
}

// receiverName is the name of a method's receiver type, without its
// pointer or type parameters.
func receiverName(fd *ast.FuncDecl) string {
	x := fd.Recv.List[0].Type
	for {
		switch e := x.(type) {
		case *ast.StarExpr:
			x = e.X
		case *ast.ParenExpr:
			x = e.X
		case *ast.IndexExpr:
			x = e.X
		case *ast.IndexListExpr:
			x = e.X
		case *ast.Ident:
			return e.Name
		default:
			return fmt.Sprintf("%T", x)
		}
	}
}

// TestLimitFileLines: no non-test Go file of the module is longer than
// maxFileLines lines.
func TestLimitFileLines(t *testing.T) {
	for _, pf := range moduleFiles(t) {
		if pf.size > maxFileLines {
			t.Errorf("%s has %d lines (limit %d)", pf.rel, pf.size, maxFileLines)
		}
	}
}

// TestLimitRemoteExports: package remote exports at most
// maxRemoteExport identifiers: top-level names plus the exported methods
// of its exported types.
func TestLimitRemoteExports(t *testing.T) {
	var names []string
	for _, pf := range coreFiles(t) {
		if pf.pkg != "remote" {
			continue
		}
		for _, d := range pf.f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				switch {
				case d.Recv == nil:
					if d.Name.IsExported() {
						names = append(names, d.Name.Name)
					}
				case d.Name.IsExported() && ast.IsExported(receiverName(d)):
					names = append(names, receiverName(d)+"."+d.Name.Name)
				}
			case *ast.GenDecl:
				for _, s := range d.Specs {
					switch s := s.(type) {
					case *ast.TypeSpec:
						if s.Name.IsExported() {
							names = append(names, s.Name.Name)
						}
					case *ast.ValueSpec:
						for _, n := range s.Names {
							if n.IsExported() {
								names = append(names, n.Name)
							}
						}
					}
				}
			}
		}
	}
	slices.Sort(names)
	if len(names) > maxRemoteExport {
		t.Errorf("package remote exports %d identifiers (limit %d): %s", len(names), maxRemoteExport, strings.Join(names, " "))
	}
}

// TestLockOrderComments: every non-test file of the module that declares
// more than one sync.Mutex or sync.RWMutex (struct fields and variables)
// says in a comment in what order they are taken ("Lock order").
func TestLockOrderComments(t *testing.T) {
	for _, pf := range moduleFiles(t) {
		var mutexes []string
		ast.Inspect(pf.f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.Field:
				if isMutex(n.Type) {
					mutexes = append(mutexes, fieldNames(n)...)
				}
			case *ast.ValueSpec:
				if n.Type != nil && isMutex(n.Type) {
					for _, id := range n.Names {
						mutexes = append(mutexes, id.Name)
					}
				}
			}
			return true
		})
		if len(mutexes) > 1 && !hasLockOrder(pf.f) {
			t.Errorf("%s declares %d mutexes (%s) and no \"Lock order\" comment", pf.rel, len(mutexes), strings.Join(mutexes, ", "))
		}
	}
}

// isMutex reports whether a type expression is sync.Mutex or
// sync.RWMutex (or a pointer to one).
func isMutex(x ast.Expr) bool {
	if s, ok := x.(*ast.StarExpr); ok {
		x = s.X
	}
	sel, ok := x.(*ast.SelectorExpr)
	if !ok {
		return false
	}
	pkg, ok := sel.X.(*ast.Ident)
	return ok && pkg.Name == "sync" && (sel.Sel.Name == "Mutex" || sel.Sel.Name == "RWMutex")
}

func fieldNames(f *ast.Field) []string {
	if len(f.Names) == 0 {
		return []string{"(embedded)"}
	}
	var names []string
	for _, id := range f.Names {
		names = append(names, id.Name)
	}
	return names
}

func hasLockOrder(f *ast.File) bool {
	for _, cg := range f.Comments {
		if strings.Contains(strings.ToLower(cg.Text()), "lock order") {
			return true
		}
	}
	return false
}

// TestNoTestBinariesTracked: no compiled test binary (*.test) is in git.
func TestNoTestBinariesTracked(t *testing.T) {
	gitTool, err := exec.LookPath("git")
	if err != nil {
		t.Skip("git is not on PATH")
	}
	root := moduleRoot(t)
	check := exec.Command(gitTool, "rev-parse", "--is-inside-work-tree")
	check.Dir = root
	if out, err := check.Output(); err != nil || strings.TrimSpace(string(out)) != "true" {
		t.Skip("not a git checkout")
	}
	ls := exec.Command(gitTool, "ls-files", "-z", "--", "*.test")
	ls.Dir = root
	out, err := ls.Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	for _, name := range strings.Split(string(out), "\x00") {
		if name != "" {
			t.Errorf("%s is tracked by git: test binaries are build products (.gitignore has *.test)", name)
		}
	}
}
