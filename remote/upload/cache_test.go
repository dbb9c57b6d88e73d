package upload

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/narfs/narfs/remote/storepath"
)

// TestEnsureCacheInfo: a cache without nix-cache-info gets narfs's; one
// with its own keeps every line and gains the index-alias line once.
func TestEnsureCacheInfo(t *testing.T) {
	for name, tc := range map[string]struct{ before, after string }{
		"missing":         {"", CacheInfo},
		"nix's":           {"StoreDir: /nix/store\n", "StoreDir: /nix/store\nNarfsIndexAliases: 1\n"},
		"no final return": {"StoreDir: /nix/store\nPriority: 30", "StoreDir: /nix/store\nPriority: 30\nNarfsIndexAliases: 1\n"},
		"already":         {"StoreDir: /nix/store\nNarfsIndexAliases: 1\n", "StoreDir: /nix/store\nNarfsIndexAliases: 1\n"},
	} {
		t.Run(name, func(t *testing.T) {
			c, dir := emptyCache(t)
			p := filepath.Join(dir, "nix-cache-info")
			if tc.before != "" {
				if err := os.WriteFile(p, []byte(tc.before), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			for range 2 {
				if err := c.EnsureCacheInfo(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			if got, _ := os.ReadFile(p); string(got) != tc.after {
				t.Errorf("nix-cache-info = %q, want %q", got, tc.after)
			}
		})
	}
}

// TestStoreDirRefused: push and index refuse a cache for another store
// directory, as Nix does, naming both, and write nothing into it.
func TestStoreDirRefused(t *testing.T) {
	c, dir := emptyCache(t)
	info := "StoreDir: /gnu/store\nWantMassQuery: 1\n"
	if err := os.WriteFile(filepath.Join(dir, "nix-cache-info"), []byte(info), 0o644); err != nil {
		t.Fatal(err)
	}
	sp, err := storepath.Parse("7rjj86a15146cq1bbbn3fn7nld9flnhm-x")
	if err != nil {
		t.Fatal(err)
	}
	paths := []PathInfo{{StoreDir: "/nix/store", Path: sp, NarSize: 1}}
	errs := map[string]error{
		"push":  c.PushAll(context.Background(), paths, PushOptions{}, func(Result) { t.Error("push reported a path") }),
		"index": c.IndexAll(context.Background(), []string{sp.Hash}, IndexOptions{}, func(IndexResult) { t.Error("index reported a path") }),
	}
	for what, err := range errs {
		if !errors.Is(err, ErrStoreDir) || !strings.Contains(err.Error(), `"/gnu/store"`) || !strings.Contains(err.Error(), `"/nix/store"`) {
			t.Errorf("%s to a /gnu/store cache: %v, want ErrStoreDir naming both", what, err)
		}
	}
	entries, _ := os.ReadDir(dir)
	if got, _ := os.ReadFile(filepath.Join(dir, "nix-cache-info")); len(entries) != 1 || string(got) != info {
		t.Errorf("the cache changed: %d entries, nix-cache-info %q", len(entries), got)
	}
}
