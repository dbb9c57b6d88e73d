package integration

import (
	"crypto/sha256"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// treeEntry is what a user sees of one node.
type treeEntry struct {
	mode   fs.FileMode
	size   int64
	mtime  int64
	target string
	sum    [32]byte
}

// snapshot walks a tree without following symlinks, hashing file contents.
func snapshot(t testing.TB, root string) map[string]treeEntry {
	t.Helper()
	out := map[string]treeEntry{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		e := treeEntry{mode: fi.Mode(), mtime: fi.ModTime().Unix()}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			if e.target, err = os.Readlink(p); err != nil {
				return err
			}
		case fi.Mode().IsRegular():
			e.size = fi.Size()
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			h := sha256.New()
			_, err = io.Copy(h, f)
			f.Close()
			if err != nil {
				return err
			}
			copy(e.sum[:], h.Sum(nil))
		}
		out[rel] = e
		return nil
	})
	if err != nil {
		t.Fatalf("walking %s: %v", root, err)
	}
	return out
}

// compareTrees asserts the mount shows exactly what Nix extracted: same
// names, types, modes, sizes, mtimes, symlink targets and bytes — and that
// diff(1), a separate process, agrees.
func compareTrees(t testing.TB, want, got string) {
	t.Helper()
	w, g := snapshot(t, want), snapshot(t, got)
	for p, we := range w {
		ge, ok := g[p]
		if !ok {
			t.Errorf("%s: missing on the mount", p)
			continue
		}
		if we.mode != ge.mode || we.size != ge.size || we.target != ge.target || we.sum != ge.sum || we.mtime != ge.mtime {
			t.Errorf("%s: mount shows mode %v size %d mtime %d target %q, Nix extracted mode %v size %d mtime %d target %q (contents equal: %v)",
				p, ge.mode, ge.size, ge.mtime, ge.target, we.mode, we.size, we.mtime, we.target, we.sum == ge.sum)
		}
	}
	for p := range g {
		if _, ok := w[p]; !ok {
			t.Errorf("%s: on the mount but not in Nix's extraction", p)
		}
	}
	if out, err := bashC(t, "diff -r --no-dereference '"+want+"' '"+got+"'"); err != nil {
		t.Errorf("diff -r --no-dereference %s %s: %v\n%s", want, got, err, out)
	}
}

func readFile(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("read %s: %v", p, err)
	}
	return b
}
