package upstream

import (
	"context"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/narfs/narfs/remote/backend"
	"github.com/narfs/narfs/remote/localcache"
	"github.com/narfs/narfs/remote/narinfo"
)

// fixtureDir holds real Nix 2.8 binary caches (see nar/testdata/gen-fixtures.sh).
const fixtureDir = "../../../nar/testdata/nix"

// pathLib is a fixture path signed by narfs-test-1 (nar/testdata/nix/paths.txt).
const (
	pathLib = "jq3hgqjn0hn0wmnld235n75qdiv5y6yk-narfs-test-lib"
	hashLib = "jq3hgqjn0hn0wmnld235n75qdiv5y6yk"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func testPublicKeys(t testing.TB) []narinfo.PublicKey {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(fixtureDir, "public-key.txt"))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := narinfo.ParsePublicKeys(string(data))
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// trustedOptions trusts the fixtures' signing key and requires signatures.
func trustedOptions(t testing.TB) Options {
	return Options{
		Keys:             testPublicKeys(t),
		RequireSigs:      true,
		Timeout:          30 * time.Second,
		NegativeTTL:      time.Hour,
		NarinfoTTL:       30 * 24 * time.Hour,
		NarinfoCacheSize: 1024,
		ListingMemory:    256 << 20,
		Logger:           quietLogger(),
	}
}

// copyCache copies a fixture cache into a temporary directory.
func copyCache(t testing.TB, name string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), name)
	if err := os.CopyFS(dst, os.DirFS(filepath.Join(fixtureDir, name))); err != nil {
		t.Fatal(err)
	}
	// CopyFS keeps read-only modes; tests rewrite files.
	err := filepath.WalkDir(dst, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.Chmod(p, 0o755)
		}
		return os.Chmod(p, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// openCache opens storeURL with a local cache of its own for records.
func openCache(t testing.TB, storeURL string, o Options) *Cache {
	t.Helper()
	u, err := backend.ParseStoreURL(storeURL)
	if err != nil {
		t.Fatal(err)
	}
	records, err := localcache.Open(t.TempDir(), 1<<30, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { records.Close() })
	c, err := Open(context.Background(), u, o, records)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// fileURL is the file:// store URL of dir.
func fileURL(dir string) string {
	abs, err := filepath.Abs(dir)
	if err != nil {
		panic(err)
	}
	return (&url.URL{Scheme: "file", Path: abs}).String()
}
