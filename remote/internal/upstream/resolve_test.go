package upstream

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/narfs/narfs/remote/backend"
)

func TestInfoSigned(t *testing.T) {
	c := openCache(t, fileURL(filepath.Join(fixtureDir, "cache-none")), trustedOptions(t))
	tp, err := c.Info(context.Background(), hashLib)
	if err != nil {
		t.Fatal(err)
	}
	if tp.StorePath.String() != pathLib || !strings.Contains(tp.Why, "narfs-test-1") {
		t.Errorf("Info = %s trusted by %q", tp.StorePath, tp.Why)
	}
	if got, err := c.Cached(hashLib); got != tp || err != nil {
		t.Errorf("Cached = %v, %v; want the verdict Info returned", got, err)
	}
}

// Moved from remote's TestResolveMissingIsRemembered: a miss is asked
// once per NegativeTTL.
func TestInfoMissIsRemembered(t *testing.T) {
	o := trustedOptions(t)
	o.NegativeTTL = time.Hour
	c := openCache(t, fileURL(filepath.Join(fixtureDir, "cache-none")), o)
	now := time.Now()
	c.negative.Now = func() time.Time { return now }
	ctx := context.Background()
	const missing = "00000000000000000000000000000000"
	gets := func() int64 { return c.Counters().Snapshot().NarinfoGets }

	if _, err := c.Info(ctx, missing); !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("Info missing = %v, want ErrNotFound", err)
	}
	if got := gets(); got != 1 {
		t.Fatalf("NarinfoGets = %d after the first lookup", got)
	}
	if _, err := c.Cached(missing); !errors.Is(err, backend.ErrNotFound) {
		t.Errorf("Cached after a miss = %v, want the remembered ErrNotFound", err)
	}
	for range 2 {
		if _, err := c.Info(ctx, missing); !errors.Is(err, backend.ErrNotFound) {
			t.Fatalf("Info again = %v, want ErrNotFound", err)
		}
	}
	if got := gets(); got != 1 {
		t.Errorf("NarinfoGets = %d, want 1: a remembered miss was asked again", got)
	}

	now = now.Add(time.Hour + time.Second)
	if _, err := c.Info(ctx, missing); !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("Info after TTL = %v, want ErrNotFound", err)
	}
	if got := gets(); got != 2 {
		t.Errorf("NarinfoGets = %d, want 2: the miss must be asked again after NegativeTTL", got)
	}
}

// Moved from remote's TestResolveMissingThenAdded: a path added after a
// miss becomes visible once the TTL has passed; found narinfos are kept
// without expiry.
func TestInfoMissingThenAdded(t *testing.T) {
	dir := copyCache(t, "cache-none")
	o := trustedOptions(t)
	o.NegativeTTL = time.Minute
	c := openCache(t, fileURL(dir), o)
	now := time.Now()
	c.negative.Now = func() time.Time { return now }
	ctx := context.Background()
	gets := func() int64 { return c.Counters().Snapshot().NarinfoGets }

	name := filepath.Join(dir, hashLib+".narinfo")
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(name); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Info(ctx, hashLib); !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("Info hidden = %v, want ErrNotFound", err)
	}
	if err := os.WriteFile(name, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Info(ctx, hashLib); !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("Info within the TTL = %v, want the remembered ErrNotFound", err)
	}
	now = now.Add(2 * time.Minute)
	if _, err := c.Info(ctx, hashLib); err != nil {
		t.Fatalf("Info after the TTL: %v", err)
	}
	if got := gets(); got != 2 {
		t.Errorf("NarinfoGets = %d, want 2", got)
	}
	if _, err := c.Info(ctx, hashLib); err != nil {
		t.Fatal(err)
	}
	if got := gets(); got != 2 {
		t.Errorf("NarinfoGets = %d after a cached lookup, want 2", got)
	}
}

// A skipped cache says so (wrapping ErrSkipped) until it answers again,
// and still resolves what it recorded locally.
func TestSkippingAndLocalInfo(t *testing.T) {
	c := openCache(t, fileURL(filepath.Join(fixtureDir, "cache-none")), trustedOptions(t))
	if err := c.Skipping(); err != nil {
		t.Fatalf("a fresh cache is skipped: %v", err)
	}
	tp, err := c.Info(context.Background(), hashLib)
	if err != nil {
		t.Fatal(err)
	}
	c.RecordNarinfo(tp)
	c.MarkDown(errors.New("test: down"))
	if err := c.Skipping(); !errors.Is(err, ErrSkipped) {
		t.Fatalf("Skipping after MarkDown = %v, want ErrSkipped", err)
	}
	c.narinfos.Purge() // only the record is left
	if got, err := c.LocalInfo(pathLib); err != nil || got.StorePath.String() != pathLib {
		t.Errorf("LocalInfo(%s) = %v, %v", pathLib, got, err)
	}
	if _, err := c.LocalInfo(hashLib + "-other-name"); !errors.Is(err, backend.ErrNotFound) {
		t.Errorf("LocalInfo of another name = %v, want ErrNotFound", err)
	}
	c.MarkUp()
	if err := c.Skipping(); err != nil {
		t.Errorf("Skipping after MarkUp = %v", err)
	}
}
