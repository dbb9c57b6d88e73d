package upload

import (
	"context"
	"os"
	"path/filepath"
	"testing"
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
