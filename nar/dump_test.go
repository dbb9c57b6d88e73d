package nar

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestDumpMatchesNixStoreDump(t *testing.T) {
	for _, p := range fixturePaths(t) {
		if p.Kind != "ca" {
			continue
		}
		t.Run(p.Name(), func(t *testing.T) {
			var buf bytes.Buffer
			if err := Dump(&buf, filepath.Join(treeDir, p.Name())); err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(buf.Bytes())
			if got, want := fmt.Sprintf("%s %d", hex.EncodeToString(sum[:]), buf.Len()), dumpSum(t, p.Base); got != want {
				t.Errorf("sha256 and size of Dump = %s, nix-store --dump = %s", got, want)
			}
			want, err := os.ReadFile(filepath.Join(fixtureDir, "dumps", p.Base+".nar"))
			if os.IsNotExist(err) {
				return // the big tree: only its hash is stored
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf.Bytes(), want) {
				t.Errorf("Dump differs from nix-store --dump (%d vs %d bytes)", buf.Len(), len(want))
			}
		})
	}
}

func TestDumpRefusesSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644); err != nil {
		t.Skip("mkfifo:", err)
	}
	if err := Dump(&bytes.Buffer{}, dir); err == nil {
		t.Fatal("Dump of a directory holding a FIFO succeeded")
	}
}

func TestDumpMissing(t *testing.T) {
	err := Dump(&bytes.Buffer{}, filepath.Join(t.TempDir(), "nope"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Dump(missing) = %v, want an error wrapping fs.ErrNotExist", err)
	}
}
