package upstream

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/narfs/narfs/remote/backend"
	"github.com/narfs/narfs/remote/stats"
)

// Each view counts what its caller said it asks for, whatever the key's
// name; a parallel download's parts count as parts, not as NAR GETs; a
// missing object is a request, not an error.
func TestCountedKinds(t *testing.T) {
	dir := t.TempDir()
	for name, data := range map[string]string{"a.narinfo": "123", "x": "4567", "y.ls": "89"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	u, err := backend.ParseStoreURL(fileURL(dir))
	if err != nil {
		t.Fatal(err)
	}
	be, err := backend.Open(context.Background(), u, backend.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	var (
		mu   sync.Mutex
		seen []stats.Kind
	)
	c := &Counters{observer: func(_ string, k stats.Kind, _ time.Duration, _ error) {
		mu.Lock()
		seen = append(seen, k)
		mu.Unlock()
	}}
	b := &Counted{be: be, c: c}
	ctx := context.Background()
	read := func(be backend.Backend, key string) {
		t.Helper()
		data, err := backend.ReadAll(ctx, be, key, 1<<10)
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		_ = data
	}
	read(b.For(stats.KindIndex), "x")           // not a .nidx: still an index
	read(b.For(stats.KindListing), "a.narinfo") // the caller decides
	read(b.For(stats.KindNarinfo), "y.ls")
	rc, err := b.Parts().GetRange(ctx, "x", 0, 2)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, rc)
	rc.Close()
	if _, err := b.For(stats.KindOther).Get(ctx, "missing"); !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("missing: %v", err)
	}

	s := c.Snapshot()
	if s.IndexGets != 1 || s.ListingGets != 1 || s.NarinfoGets != 1 || s.OtherGets != 1 {
		t.Errorf("gets: index %d listing %d narinfo %d other %d, want 1 each", s.IndexGets, s.ListingGets, s.NarinfoGets, s.OtherGets)
	}
	if s.NarGets != 0 || s.NarParts != 1 {
		t.Errorf("NarGets %d NarParts %d, want 0 and 1", s.NarGets, s.NarParts)
	}
	if got := s.Upstream[stats.KindIndex]; got.Requests != 1 || got.Bytes != 4 || got.Errors != 0 {
		t.Errorf("index traffic %+v", got)
	}
	if got := s.Upstream[stats.KindNar]; got.Requests != 1 || got.Bytes != 2 {
		t.Errorf("nar traffic %+v", got)
	}
	if s.NarBytes != 2 || s.UpstreamBytes != 4+3+2+2 {
		t.Errorf("NarBytes %d UpstreamBytes %d", s.NarBytes, s.UpstreamBytes)
	}
	if got := s.Upstream[stats.KindOther]; got.Requests != 1 || got.Errors != 0 {
		t.Errorf("a missing object: %+v, want a request and no error", got)
	}
	want := []stats.Kind{stats.KindIndex, stats.KindListing, stats.KindNarinfo, stats.KindNar, stats.KindOther}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != len(want) {
		t.Fatalf("observer saw %v, want %v", seen, want)
	}
	for i := range want {
		if seen[i] != want[i] {
			t.Errorf("observer saw %v, want %v", seen, want)
			break
		}
	}
}
