package backend

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
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
