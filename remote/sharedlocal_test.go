package remote

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// Two caches of a Substituters share one local disk (one download, one
// entry per NAR), but a NAR one of them has wrong or missing never fails
// the same NAR from the other: its failure is that cache's alone.
func TestSharedLocalOneCacheBad(t *testing.T) {
	for _, how := range []string{"corrupt", "missing"} {
		t.Run(how, func(t *testing.T) {
			ctx := context.Background()
			bad, narPath, data := corruptNoneCache(t, pathLib)
			if how == "corrupt" {
				data[len(data)-20] ^= 1
				putFile(t, narPath, data)
			} else if err := os.Remove(narPath); err != nil {
				t.Fatal(err)
			}
			good := copyCache(t, "cache-none")
			urls := make([]string, 2)
			for i, d := range []string{bad, good} {
				abs, err := filepath.Abs(d)
				if err != nil {
					t.Fatal(err)
				}
				urls[i] = "file://" + abs
			}
			g, err := Open(ctx, urls, trustedConfig(t))
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			var a, b *cache
			for _, s := range g.caches {
				if s.URL() == urls[0] {
					a = s
				} else {
					b = s
				}
			}
			if a == nil || b == nil || a.local != b.local {
				t.Fatal("the caches do not share one local disk")
			}
			pa, pb := mustResolveIn(t, a, pathLib), mustResolveIn(t, b, pathLib)
			if _, err := a.materialize(ctx, pa); err == nil {
				t.Fatalf("Materialize from the %s cache: no error", how)
			}
			if _, err := b.materialize(ctx, pb); err != nil {
				t.Fatalf("Materialize from the good cache after the %s one failed: %v", how, err)
			}
			if got := b.counts().Fetches; got != 1 {
				t.Errorf("good cache: Fetches = %d, want 1", got)
			}
			if got, want := a.counts().Corrupt, map[string]int64{"corrupt": 1, "missing": 0}[how]; got != want {
				t.Errorf("bad cache: Corrupt = %d, want %d", got, want)
			}
		})
	}
}
