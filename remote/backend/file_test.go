package backend

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// TestFileKeyConfinement: keys cannot leave the store directory, lexically
// or through symlinks; symlinks inside it work.
func TestFileKeyConfinement(t *testing.T) {
	top := t.TempDir()
	dir := filepath.Join(top, "cache")
	for p, data := range map[string]string{
		"cache/nix-cache-info":   "StoreDir: /nix/store\n",
		"cache/nar/a.nar":        "nar",
		"cache/a.narinfo":        "x",
		"cache/b.narinfo.tmp.12": "partial",
		"secret":                 "outside",
	} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(top, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(top, p), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	must(t, os.Symlink("../secret", filepath.Join(dir, "escape.narinfo")))
	must(t, os.Symlink("/etc/passwd", filepath.Join(dir, "abs.narinfo")))
	must(t, os.Symlink("nar/a.nar", filepath.Join(dir, "inside.narinfo")))
	must(t, os.Symlink("..", filepath.Join(dir, "up")))

	b := mustOpen(t, "file://"+dir, Options{})
	ctx := context.Background()
	for _, key := range []string{"../secret", "nar/../../secret", "/etc/passwd", "escape.narinfo", "abs.narinfo", "up/secret", "", ".", "nar/", "a\\b"} {
		_, err := b.Get(ctx, key)
		if !errors.Is(err, ErrInvalidKey) && !errors.Is(err, ErrNotFound) {
			t.Errorf("get %q: %v, want ErrInvalidKey", key, err)
		}
		if err == nil {
			t.Errorf("get %q escaped the store", key)
		}
	}
	for _, key := range []string{"../secret", "escape.narinfo", "/etc/passwd"} {
		if _, err := b.Get(ctx, key); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("get %q: %v, want ErrInvalidKey", key, err)
		}
	}
	if data, _, err := readObject(ctx, b, "inside.narinfo"); err != nil || string(data) != "nar" {
		t.Errorf("symlink inside the store: %q, %v", data, err)
	}
	if _, err := b.Get(ctx, "nar"); !errors.Is(err, ErrNotFound) {
		t.Errorf("get of a directory: %v, want ErrNotFound", err)
	}

	var got []string
	must(t, b.List(ctx, ".narinfo", func(k string) error { got = append(got, k); return nil }))
	slices.Sort(got)
	// Temp files are skipped; symlinks are listed (a reader then decides).
	want := []string{"a.narinfo", "abs.narinfo", "escape.narinfo", "inside.narinfo"}
	if !slices.Equal(got, want) {
		t.Errorf("List = %q, want %q", got, want)
	}
}

func TestFileOpenErrors(t *testing.T) {
	ctx := context.Background()
	if _, err := Open(ctx, mustParse(t, "file:///nonexistent/narfs-cache"), Options{}); err == nil {
		t.Error("opened a missing directory")
	}
	f := filepath.Join(t.TempDir(), "f")
	must(t, os.WriteFile(f, nil, 0o644))
	if _, err := Open(ctx, mustParse(t, "file://"+f), Options{}); err == nil {
		t.Error("opened a regular file as a store")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestFileSpecialFiles: a FIFO, a socket or a device in the store is not
// an object. Opening a FIFO without a writer used to block forever, so
// each call runs under a short ceiling.
func TestFileSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "a.narinfo"), []byte("x"), 0o644))
	must(t, syscall.Mkfifo(filepath.Join(dir, "fifo.narinfo"), 0o644))
	ln, err := net.Listen("unix", filepath.Join(dir, "sock.narinfo"))
	must(t, err)
	t.Cleanup(func() { ln.Close() })
	must(t, os.Symlink("fifo.narinfo", filepath.Join(dir, "tofifo.narinfo")))
	b := mustOpen(t, "file://"+dir, Options{})
	ctx := context.Background()

	for _, key := range []string{"fifo.narinfo", "sock.narinfo", "tofifo.narinfo"} {
		for op, f := range map[string]func() error{
			"get":   func() error { _, err := b.Get(ctx, key); return err },
			"stat":  func() error { _, err := b.Stat(ctx, key); return err },
			"range": func() error { _, err := b.GetRange(ctx, key, 0, 0); return err },
		} {
			err := withinShort(t, op+" "+key, f)
			if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "not a regular file") {
				t.Errorf("%s %s: %v, want ErrNotFound (not a regular file)", op, key, err)
			}
		}
	}
	var got []string
	must(t, withinShort(t, "list", func() error {
		return b.List(ctx, ".narinfo", func(k string) error { got = append(got, k); return nil })
	}))
	slices.Sort(got)
	// The symlink is listed like any symlink; looking it up fails cleanly.
	if want := []string{"a.narinfo", "tofifo.narinfo"}; !slices.Equal(got, want) {
		t.Errorf("List = %q, want %q", got, want)
	}
	// A regular file still reads normally (O_NONBLOCK cleared).
	if data, err := ReadAll(ctx, b, "a.narinfo", 10); err != nil || string(data) != "x" {
		t.Errorf("regular file: %q, %v", data, err)
	}
}
