package backend

import (
	"bytes"
	"context"
	"io"
	"sync"
	"testing"
	"time"
)

// Readers sharing a pool hold at most its bound (plus a buffer each when
// the pool is spent), read every object intact, and hand every buffer
// back, even when closed before the end.
func TestPartPoolSharedBound(t *testing.T) {
	defer checkNoGoroutineLeak(t)
	const part = 64 << 10
	pool := NewPartPool(part, 4*part)
	var objs []*fakeRanges
	for i := range 4 {
		objs = append(objs, &fakeRanges{data: testData(1<<20 + i*12345)})
	}
	var mu sync.Mutex
	peak := 0
	watch := func() {
		lent, _ := pool.stats()
		mu.Lock()
		peak = max(peak, lent)
		mu.Unlock()
	}
	for _, f := range objs {
		f.fault = func(req int, off, n int64) (int64, time.Duration, error) {
			watch()
			return -1, time.Millisecond, nil
		}
	}
	var wg sync.WaitGroup
	for i, f := range objs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := NewParallelReader(context.Background(), f, "obj", int64(len(f.data)),
				ParallelOptions{Pool: pool, FirstPart: part, MaxConcurrency: 8, Budget: 8 * part, MinPart: 1})
			defer r.Close()
			if i == 3 {
				// Closed half-way: its buffers come back too.
				io.CopyN(io.Discard, r, int64(len(f.data)/2))
				return
			}
			got, err := readAllChunks(r)
			if err != nil || !bytes.Equal(got, f.data) {
				t.Errorf("object %d: %d bytes, %v; want %d bytes intact", i, len(got), err, len(f.data))
			}
		}()
	}
	wg.Wait()
	if peak > 4 {
		t.Errorf("%d buffers charged to a pool of 4 at once", peak)
	}
	if lent, free := pool.stats(); lent != 0 || free > 4 {
		t.Errorf("after every reader closed: %d buffers lent, %d free; want 0 and at most 4", lent, free)
	}
}

// A reader whose pool is spent by another (a slow server's parts) still
// gets a buffer and reads at once: downloads never wait for another's
// memory.
func TestPartPoolNeverWaits(t *testing.T) {
	defer checkNoGoroutineLeak(t)
	const part = 64 << 10
	pool := NewPartPool(part, 2*part)
	release := make(chan struct{})
	slow := &fakeRanges{data: testData(1 << 20)}
	slow.fault = func(req int, off, n int64) (int64, time.Duration, error) {
		<-release
		return -1, 0, nil
	}
	sr := NewParallelReader(context.Background(), slow, "slow", int64(len(slow.data)),
		ParallelOptions{Pool: pool, FirstPart: part, MaxConcurrency: 4, Budget: 4 * part, MinPart: 1})
	defer sr.Close()
	go io.Copy(io.Discard, sr)
	// Wait until the slow reader holds the whole pool.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if lent, _ := pool.stats(); lent == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	// Take the rest of the pool, as another reader's parts would.
	b, charged := pool.get(false)
	if b == nil || !charged {
		t.Fatal("the pool had no second buffer")
	}
	defer pool.put(b, charged)
	fast := &fakeRanges{data: testData(300 << 10)}
	done := make(chan error, 1)
	go func() {
		r := NewParallelReader(context.Background(), fast, "fast", int64(len(fast.data)),
			ParallelOptions{Pool: pool, FirstPart: part, MaxConcurrency: 4, Budget: 4 * part, MinPart: 1})
		defer r.Close()
		got, err := readAllChunks(r)
		if err == nil && !bytes.Equal(got, fast.data) {
			err = io.ErrUnexpectedEOF
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("reading beside a spent pool: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a reader waited for another reader's buffers")
	}
	close(release)
}
