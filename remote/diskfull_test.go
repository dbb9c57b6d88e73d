package remote

import (
	"context"
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"
)

// A full disk is a local failure: an error naming ENOSPC, not ErrCorrupt,
// nothing memoised (the next try fetches again), nothing left behind.
func TestMaterializeDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("cannot mount tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })

	cache := copyCache(t, "cache-zstd")
	cfg := trustedConfig(t)
	cfg.CacheDir = dir
	s := openStore(t, cache, "", cfg)
	var big string
	for _, p := range fixturePaths(t) {
		if strings.HasSuffix(p.base, "-tree") {
			big = p.base
		}
	}
	p := mustResolve(t, s, big)
	for i := range 2 {
		_, err := s.Materialize(context.Background(), p)
		if !errors.Is(err, syscall.ENOSPC) || errors.Is(err, ErrCorrupt) {
			t.Fatalf("attempt %d: want ENOSPC and not ErrCorrupt, got %v", i, err)
		}
	}
	if got := s.Stats().NarGets; got != 2 {
		t.Errorf("NarGets = %d: a full disk must not be remembered as a bad NAR", got)
	}
	if got := s.Stats().Corrupt; got != 0 {
		t.Errorf("Corrupt = %d", got)
	}
	ents, _ := os.ReadDir(dir + "/v1/tmp")
	if len(ents) != 0 {
		t.Errorf("left %d temporary entries behind", len(ents))
	}
}
