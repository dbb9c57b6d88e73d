package blob

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/narfs/narfs/remote/chunkindex"
	"github.com/narfs/narfs/remote/internal/tune"
)

// Ensure returns once chunks [first, last) are verified in the blob,
// starting requests for those missing and, in the same requests, for the
// missing chunks up to raLast.
func (b *Blob) Ensure(ctx context.Context, first, last, raLast int) error {
	raLast = max(raLast, last)
	for {
		if b.Complete(first, last) && (raLast == last || b.Complete(last, raLast)) {
			return nil
		}
		// Another process sharing the cache dir may have written chunks
		// since: its marks make them claims to check, not fetches.
		marks := make([]byte, raLast-first)
		n, _ := b.marks.ReadAt(marks, int64(first))
		var waits []chan struct{}
		var checks []int
		var runs [][2]int
		var hc holdCall
		now := time.Now()
		b.mu.Lock()
		for i := first; i < first+n; i++ {
			if marks[i-first] == 1 && b.chunks[i].st == missing && !b.chunks[i].badClaim {
				b.chunks[i].st = claimed
			}
		}
		for i := first; i < raLast; i++ {
			c := &b.chunks[i]
			switch c.st {
			case verified:
				continue
			case inflight:
				if i < last {
					waits = append(waits, c.done)
					if c.run != nil {
						c.run.promote()
					}
				}
				continue
			case claimed:
				c.st, c.done, c.run = inflight, make(chan struct{}), nil
				checks = append(checks, i)
				if i < last {
					waits = append(waits, c.done)
				}
				continue
			}
			if now.Before(c.failedUntil) {
				if i < last {
					b.mu.Unlock()
					return c.err
				}
				continue
			}
			c.st, c.done, c.run = inflight, make(chan struct{}), nil
			if i < last {
				waits = append(waits, c.done)
			}
			if b.holdLocked(i, &hc) {
				continue
			}
			if n := len(runs); n > 0 && runs[n-1][1] == i && b.runBytes(runs[n-1][0], i+1) <= maxRun {
				runs[n-1][1] = i + 1
			} else {
				runs = append(runs, [2]int{i, i + 1})
			}
		}
		b.mu.Unlock()
		b.startHeld()
		for _, i := range checks {
			b.check(i)
		}
		for _, r := range runs {
			go b.fetch(r[0], r[1], nil)
		}
		if len(waits) == 0 {
			return nil
		}
		retry := false
		for _, w := range waits {
			select {
			case <-w:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		b.mu.Lock()
		for i := first; i < last; i++ {
			c := &b.chunks[i]
			if c.st == verified {
				continue
			}
			if c.st == missing && c.err != nil && c.err != errRetry {
				err := c.err
				b.mu.Unlock()
				return err
			}
			retry = true
		}
		b.mu.Unlock()
		if !retry {
			return nil
		}
		// Chunks a failed request never reached, or claims that did not
		// hold: ask again (ctx bounds how long), without readahead.
		raLast = last
	}
}

// Prefetch starts background requests (Options.Background) for the
// missing chunks of [first, last), starting at from and wrapping around,
// and waits for none. Chunks claimed by another process are left for the
// reads that need them to check.
func (b *Blob) Prefetch(first, last, from int) {
	from = min(max(from, first), last)
	var runs [][2]int
	hc := holdCall{bg: true}
	var claims []*run
	b.mu.Lock()
	now := time.Now()
	for _, span := range [][2]int{{from, last}, {first, from}} {
		for i := span[0]; i < span[1]; i++ {
			c := &b.chunks[i]
			if c.st != missing || now.Before(c.failedUntil) {
				continue
			}
			c.st, c.done, c.run = inflight, make(chan struct{}), nil
			if b.holdLocked(i, &hc) {
				continue
			}
			n := len(runs)
			if n > 0 && runs[n-1][1] == i && b.runBytes(runs[n-1][0], i+1) <= maxRun {
				runs[n-1][1] = i + 1
			} else {
				runs = append(runs, [2]int{i, i + 1})
				claims = append(claims, &run{urgent: make(chan struct{})})
				n++
			}
			c.st, c.done, c.run = inflight, make(chan struct{}), claims[n-1]
		}
	}
	b.mu.Unlock()
	b.startHeld()
	for k, r := range runs {
		go b.fetch(r[0], r[1], claims[k])
	}
}

func (b *Blob) runBytes(i, j int) int64 {
	return b.x.Chunks[j-1].FileOffset + b.x.Chunks[j-1].FileLen - b.x.Chunks[i].FileOffset
}

// settle ends chunk i's flight.
func (b *Blob) settle(i int, ok bool, err error) {
	b.mu.Lock()
	c := &b.chunks[i]
	if ok {
		c.st, c.err = verified, nil
	} else {
		c.st, c.err = missing, err
		if errors.Is(err, ErrChunk) {
			c.failedUntil = time.Now().Add(tune.CorruptMemo)
		}
	}
	close(c.done)
	b.mu.Unlock()
}

// check verifies a chunk someone else marked, from the blob.
func (b *Blob) check(i int) {
	c := b.x.Chunks[i]
	buf := make([]byte, c.NarLen)
	if _, err := b.blob.ReadAt(buf, c.NarOffset); err == nil && sha256.Sum256(buf) == c.SHA256 {
		b.settle(i, true, nil)
		return
	}
	b.mu.Lock()
	b.chunks[i].badClaim = true
	b.mu.Unlock()
	b.settle(i, false, errRetry)
}

// chunkBufs holds the buffers of a run's stored and decoded chunks (about
// a chunk each), reused from run to run: runs fetched in parallel would
// otherwise leave a few MiB of garbage each, which the collector lets
// grow the heap to twice what is live before it runs.
var chunkBufs = sync.Pool{New: func() any { return new([]byte) }}

// fetch requests chunks [i, j) in one ranged GET and settles each as soon
// as it is verified and written. bg: a background run (Prefetch).
func (b *Blob) fetch(i, j int, bg *run) {
	defer func() {
		if r := recover(); r != nil {
			b.opts.Logger.Error("panic fetching chunks", "panic", r)
			for k := i; k < j; k++ {
				b.settleIfInflight(k, fmt.Errorf("internal error: %v", r))
			}
		}
	}()
	first := b.x.Chunks[i]
	n := b.runBytes(i, j)
	ctx, cancel := context.WithTimeout(b.bg, b.fetchDeadline(n))
	defer cancel()
	if b.opts.OnFetch != nil {
		b.opts.OnFetch(n)
	}
	rc, streamed, err := b.request(ctx, i, j, first.FileOffset, n)
	if streamed {
		return // the object's stream settled [i, j)
	}
	if err != nil {
		b.opts.Logger.Warn("chunk request failed", "url", b.x.URL, "offset", first.FileOffset, "bytes", n, "err", err)
		b.settle(i, false, err)
		for k := i + 1; k < j; k++ {
			b.settle(k, false, errRetry)
		}
		return
	}
	defer rc.Close()
	if bg != nil && b.opts.Background != nil {
		select {
		case b.opts.Background <- struct{}{}:
			defer func() { <-b.opts.Background }()
		case <-bg.urgent:
		case <-ctx.Done():
			b.settle(i, false, errRetry)
			for k := i + 1; k < j; k++ {
				b.settle(k, false, errRetry)
			}
			return
		}
	}
	sp, op := chunkBufs.Get().(*[]byte), chunkBufs.Get().(*[]byte)
	stored, out := (*sp)[:0], (*op)[:0]
	defer func() {
		*sp, *op = stored[:0], out[:0]
		chunkBufs.Put(sp)
		chunkBufs.Put(op)
	}()
	for k := i; k < j; k++ {
		c := b.x.Chunks[k]
		if int64(cap(stored)) < c.FileLen {
			stored = make([]byte, c.FileLen)
		}
		stored = stored[:c.FileLen]
		_, err := io.ReadFull(rc, stored)
		if err == nil {
			out, err = b.x.DecodeChunk(out[:0], c, stored)
			if err != nil {
				b.opts.Logger.Error("chunk failed verification; not served", "url", b.x.URL, "nar-offset", c.NarOffset, "err", err)
			}
		}
		if err == nil {
			err = b.write(k, c, out)
		}
		if err != nil {
			b.settle(k, false, err)
			for m := k + 1; m < j; m++ {
				b.settle(m, false, errRetry)
			}
			return
		}
		b.settle(k, true, nil)
	}
}

func (b *Blob) settleIfInflight(k int, err error) {
	b.mu.Lock()
	inflight := b.chunks[k].st == inflight
	b.mu.Unlock()
	if inflight {
		b.settle(k, false, err)
	}
}

// write stores a verified chunk: its bytes, then its mark.
func (b *Blob) write(k int, c chunkindex.Chunk, data []byte) error {
	if _, err := b.blob.WriteAt(data, c.NarOffset); err != nil {
		return fmt.Errorf("%w: writing chunk: %w", ErrLocal, err)
	}
	if _, err := b.marks.WriteAt([]byte{1}, int64(k)); err != nil {
		return fmt.Errorf("%w: marking chunk: %w", ErrLocal, err)
	}
	return nil
}
