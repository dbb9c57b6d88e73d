package remote

import (
	"context"
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/narfs/narfs/remote/internal/tune"
)

// A full disk is a local failure: an error naming ENOSPC, not ErrCorrupt,
// remembered with backoff so that a walk over many files (diff -r) does
// not turn into a download per file, and retried once the memo expires;
// nothing left behind.
func TestMaterializeDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=1m,mode=0700"); err != nil {
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
	sub, _ := firstFile(buildListing(t, narBytes(t, big)))
	for i := range 50 {
		_, err := s.openFile(context.Background(), p, sub)
		if !errors.Is(err, syscall.ENOSPC) || errors.Is(err, ErrCorrupt) {
			t.Fatalf("attempt %d: want ENOSPC and not ErrCorrupt, got %v", i, err)
		}
	}
	if got := s.Stats().NarGets; got != 1 {
		t.Errorf("NarGets = %d after 50 opens on a full disk, want 1", got)
	}
	// Past the memo, the next open tries again.
	s.local.Failed().Now = func() time.Time { return time.Now().Add(tune.LocalMemoMax) }
	if _, err := s.openFile(context.Background(), p, sub); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("after the memo: %v", err)
	}
	if got := s.Stats().NarGets; got != 2 {
		t.Errorf("NarGets = %d after the memo expired, want 2", got)
	}
	if got := s.Stats().Corrupt; got != 0 {
		t.Errorf("Corrupt = %d", got)
	}
	ents, _ := os.ReadDir(dir + "/v2/tmp")
	if len(ents) != 0 {
		t.Errorf("left %d temporary entries behind", len(ents))
	}
}
