package content

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/narfs/narfs/remote/internal/trust"
	"github.com/narfs/narfs/remote/localcache"
)

type testCounters struct{ corrupt, fetched, chunk atomic.Int64 }

func (c *testCounters) Corrupt()           { c.corrupt.Add(1) }
func (c *testCounters) Fetched()           { c.fetched.Add(1) }
func (c *testCounters) ChunkBytes(n int64) { c.chunk.Add(n) }

// waiters is how many callers wait for the flight of key.
func waiters(s *Store, key string) int {
	s.flights.mu.Lock()
	defer s.flights.mu.Unlock()
	if f := s.flights.m[key]; f != nil {
		return f.waiters
	}
	return 0
}

// Two caches, same NAR: the second cache's caller joins the first's
// download, which fails (a bad object in the first cache, or the cache
// going down). It then downloads from its own cache, and gets the entry;
// the first cache's failure is remembered for it alone.
func TestEntryFlightFailureIsOneCaches(t *testing.T) {
	for _, why := range []error{
		fmt.Errorf("NAR of the first cache: %w", trust.ErrCorrupt),
		errors.New("first cache down: connection refused"),
	} {
		t.Run(why.Error(), func(t *testing.T) {
			s := testStore(t)
			ctx := context.Background()
			key := "0123456789abcdfghijklmnpqrsvwxyz0123456789abcdfghij"
			release := make(chan struct{})
			var ca, cb testCounters
			a := Fetch{Key: key, Failed: "a/flight", What: "NAR via a", Path: "p", Log: slog.New(slog.DiscardHandler), Counters: &ca,
				Run: func() (*localcache.Entry, error) { <-release; return nil, why }}
			var bRuns atomic.Int32
			b := Fetch{Key: key, Failed: "b/flight", What: "NAR via b", Path: "p", Log: slog.New(slog.DiscardHandler), Counters: &cb,
				Run: func() (*localcache.Entry, error) {
					bRuns.Add(1)
					return commitBlob(t, s, key, []byte("the NAR")), nil
				}}
			aErr := make(chan error, 1)
			go func() {
				_, err := s.Entry(ctx, a)
				aErr <- err
			}()
			for waiters(s, key) != 1 {
				time.Sleep(time.Millisecond)
			}
			bDone := make(chan struct{})
			var e *localcache.Entry
			var bErr error
			go func() {
				defer close(bDone)
				e, bErr = s.Entry(ctx, b)
			}()
			for waiters(s, key) != 2 {
				time.Sleep(time.Millisecond)
			}
			close(release)
			if err := <-aErr; !errors.Is(err, why) {
				t.Errorf("first cache's caller: %v, want %v", err, why)
			}
			<-bDone
			if bErr != nil {
				t.Fatalf("second cache's caller, after the first cache's download failed: %v", bErr)
			}
			e.Release()
			if bRuns.Load() != 1 || cb.fetched.Load() != 1 {
				t.Errorf("second cache: %d downloads, %d fetched; want 1, 1", bRuns.Load(), cb.fetched.Load())
			}
			if s.failed.Get("b/flight") != nil {
				t.Error("the first cache's failure is remembered for the second")
			}
			if errors.Is(why, trust.ErrCorrupt) && (s.failed.Get("a/flight") == nil || ca.corrupt.Load() != 1) {
				t.Error("the first cache's corrupt NAR is not remembered, or not counted, for it")
			}
		})
	}
}

// Callers of one cache for the same content share one download, and its
// failure: no retry.
func TestEntryFlightSharedWithinACache(t *testing.T) {
	s := testStore(t)
	ctx := context.Background()
	key := "0123456789abcdfghijklmnpqrsvwxyz0123456789abcdfghij"
	release := make(chan struct{})
	var runs atomic.Int32
	var c testCounters
	f := Fetch{Key: key, Failed: "a/flight", What: "NAR", Path: "p", Log: slog.New(slog.DiscardHandler), Counters: &c,
		Run: func() (*localcache.Entry, error) {
			runs.Add(1)
			<-release
			return nil, fmt.Errorf("bad: %w", trust.ErrCorrupt)
		}}
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := s.Entry(ctx, f)
			errs <- err
		}()
	}
	for waiters(s, key) != 2 {
		time.Sleep(time.Millisecond)
	}
	close(release)
	for range 2 {
		if err := <-errs; !errors.Is(err, trust.ErrCorrupt) {
			t.Errorf("caller: %v, want ErrCorrupt", err)
		}
	}
	if runs.Load() != 1 {
		t.Errorf("%d downloads, want 1", runs.Load())
	}
}
