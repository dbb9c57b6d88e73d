package remote

import (
	"context"
	"testing"
	"time"
)

// With PrefetchReferences, reading one path fetches its references in the
// background; without it, nothing else is fetched.
func TestPrefetchReferences(t *testing.T) {
	dir := copyCache(t, "cache-zstd")
	var app string
	for _, p := range fixturePaths(t) {
		if len(p.base) > 33 && p.base[33:] == "narfs-test-app" {
			app = p.base
		}
	}
	if app == "" {
		t.Fatal("no narfs-test-app fixture")
	}
	for _, prefetch := range []bool{false, true} {
		cfg := trustedConfig(t)
		cfg.PrefetchReferences = prefetch
		s := openStore(t, dir, "", cfg)
		p := mustResolve(t, s, app)
		if _, err := s.Materialize(context.Background(), p); err != nil {
			t.Fatal(err)
		}
		want := int64(1)
		if prefetch {
			want = int64(1 + len(p.NarInfo.References))
			for _, r := range p.NarInfo.References {
				if r == p.Path {
					want--
				}
			}
			// Background work: wait for it, bounded.
			for deadline := time.Now().Add(30 * time.Second); s.Stats().Fetches < want && time.Now().Before(deadline); {
				time.Sleep(10 * time.Millisecond)
			}
		}
		if got := s.Stats().Fetches; got != want {
			t.Errorf("prefetch=%v: %d NARs fetched, want %d", prefetch, got, want)
		}
	}
}
