package nar

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Dump writes the NAR serialisation of the file, symlink or directory tree
// at path to w, byte-identical to `nix-store --dump`: entries in byte order
// (os.ReadDir sorts by name), executable iff the owner-x bit is set. Other
// file types (devices, sockets, FIFOs) are refused.
func Dump(w io.Writer, path string) error {
	nw := NewWriter(w)
	if err := dump(nw, path); err != nil {
		return err
	}
	if err := nw.Close(); err != nil {
		return fmt.Errorf("dump %s: %w", path, err)
	}
	return nil
}

func dump(w *Writer, path string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return fmt.Errorf("dump: %w", err)
	}
	switch mode := fi.Mode(); {
	case mode.IsRegular():
		f, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("dump: %w", err)
		}
		defer f.Close()
		if err := w.File(mode&0o100 != 0, fi.Size(), f); err != nil {
			return fmt.Errorf("dump %s: %w", path, err)
		}
		return nil
	case mode&fs.ModeSymlink != 0:
		target, err := os.Readlink(path)
		if err != nil {
			return fmt.Errorf("dump: %w", err)
		}
		return w.Symlink(target)
	case mode.IsDir():
		entries, err := os.ReadDir(path)
		if err != nil {
			return fmt.Errorf("dump: %w", err)
		}
		if err := w.Directory(); err != nil {
			return err
		}
		for _, e := range entries {
			if err := w.Entry(e.Name()); err != nil {
				return err
			}
			if err := dump(w, filepath.Join(path, e.Name())); err != nil {
				return err
			}
		}
		return w.EndDirectory()
	default:
		return fmt.Errorf("dump %s: unsupported file type %v", path, mode.Type())
	}
}
