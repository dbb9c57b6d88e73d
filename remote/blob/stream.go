package blob

import (
	"context"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/narfs/narfs/remote/backend"
)

// # Servers that ignore Range
//
// A server that answers a range request with 200 and the whole object
// (Python's http.server, some proxy caches) makes every chunk request cost
// the object's prefix. So a blob first finds out what its source does:
// while that is unknown, one request is in flight (the probe, for the
// first chunk asked for) and the chunks asked for meanwhile wait for its
// answer. A ranged answer starts their requests as usual, and every later
// request is a plain range request. A whole answer becomes the blob's
// stream: the object read once from its start, every missing chunk it
// passes verified and written as it goes by, to the end of the object,
// since any chunk left behind would cost the prefix again. Chunks asked
// for later are settled by the stream in progress if it has not passed
// them, else by one started after it. Bytes fetched for any sequence of
// reads are then at most the object once (plus what a failed or cut
// stream had read), instead of a prefix per request.
//
// What a source does is shared by the blobs of one cache (Ranges), so
// that only a cache's first blob waits for a probe.

// Ranges is what a cache is known to do with range requests, shared by
// its blobs. The zero value knows nothing.
type Ranges struct {
	honoured atomic.Bool // a range request was answered with its range
	ignored  atomic.Bool // one was answered with the whole object
}

// SetIgnored records that the cache answers range requests with the
// whole object (learnt elsewhere, e.g. by a NAR download).
func (r *Ranges) SetIgnored() { r.ignored.Store(true) }

// Ignored reports whether the cache is known to ignore ranges.
func (r *Ranges) Ignored() bool { return r.ignored.Load() }

type rangeMode uint8

const (
	modeUnknown rangeMode = iota
	modeRanged
	modeStream
)

// stream is one read of the whole object from its start.
type stream struct {
	run  *run // marks the chunks it is to settle (chunk.run)
	next int  // the next chunk it decides about; protected by Blob.mu
}

// modeLocked is what the blob does with a missing chunk now.
func (b *Blob) modeLocked() rangeMode {
	if b.mode == modeUnknown {
		switch {
		case b.opts.Ranges.ignored.Load():
			b.mode = modeStream
		case b.opts.Ranges.honoured.Load():
			b.mode = modeRanged
		}
	}
	return b.mode
}

// holdCall is what one Ensure or Prefetch call asked holdLocked: the
// probe's run, if this call started it, and for Prefetch (bg) the claim
// its chunks queued behind the probe are fetched under later.
type holdCall struct {
	probing    bool
	start, end int
	bg         bool
	queued     *run
}

// holdLocked decides who fetches chunk i, which the caller (hc) has just
// made inflight: false leaves it to the caller's ranged request (ranges
// work, or it is in the probe's run, which grows as the caller's runs
// do); true means a stream or the probe's answer will settle it. The
// caller calls startHeld after unlocking.
func (b *Blob) holdLocked(i int, hc *holdCall) bool {
	c := &b.chunks[i]
	switch b.modeLocked() {
	case modeRanged:
		return false
	case modeUnknown:
		if hc.probing && i == hc.end && b.runBytes(hc.start, i+1) <= maxRun {
			hc.end++
			return false
		}
		if !b.probing {
			b.probing = true
			*hc = holdCall{probing: true, start: i, end: i + 1}
			return false
		}
		c.run = nil
		if hc.bg {
			if hc.queued == nil {
				hc.queued = &run{urgent: make(chan struct{})}
			}
			c.run = hc.queued // a background run's, once ranges work
		}
		b.queued = append(b.queued, i)
		return true
	}
	c.run = b.streamForLocked(i).run
	return true
}

// streamForLocked returns the stream that will pass chunk i: the one in
// progress if it has not passed it yet, else the one to run after it. A
// stream created here is started by startHeld.
func (b *Blob) streamForLocked(i int) *stream {
	s := b.stream
	switch {
	case s == nil:
		s = &stream{run: &run{urgent: make(chan struct{})}}
		b.stream = s
		b.startPending = true
	case s.next > i:
		if b.nextStream == nil {
			b.nextStream = &stream{run: &run{urgent: make(chan struct{})}}
		}
		s = b.nextStream
	}
	return s
}

// startHeld starts the stream holdLocked created, if any.
func (b *Blob) startHeld() {
	b.mu.Lock()
	s := b.stream
	start := b.startPending
	b.startPending = false
	b.mu.Unlock()
	if start {
		go b.runStreams(s, nil)
	}
}

// fetchDeadline is the deadline of fetch's request for n stored bytes: a
// probe's answer may be the whole object, read to its end.
func (b *Blob) fetchDeadline(n int64) time.Duration {
	b.mu.Lock()
	probe := b.modeLocked() == modeUnknown
	b.mu.Unlock()
	if probe {
		n = max(n, b.x.FileSize)
	}
	return b.opts.FetchDeadline(n)
}

// request is fetch's request for chunks [i, j), n stored bytes at off: a
// plain range request once ranges are known to work, else the probe. A
// probe answered with the whole object makes it the blob's stream and
// reads it (streamed reports that: fetch has nothing left to do); its
// other answers settle the chunks queued behind it.
func (b *Blob) request(ctx context.Context, i, j int, off, n int64) (rc io.ReadCloser, streamed bool, err error) {
	b.mu.Lock()
	probe := b.modeLocked() == modeUnknown
	b.mu.Unlock()
	if !probe {
		rc, err = b.src.GetRange(ctx, b.x.URL, off, n)
		return rc, false, err
	}
	rc, whole, err := backend.GetRangeOrWhole(ctx, b.src, b.x.URL, off, n)
	b.mu.Lock()
	b.probing = false
	queued := b.queued
	b.queued = nil
	if err != nil {
		// Still unknown: the next request probes. The chunks queued
		// behind this one fail with it, as the rest of a run does.
		b.mu.Unlock()
		for _, k := range queued {
			b.settle(k, false, errRetry)
		}
		return nil, false, err
	}
	if !whole {
		b.mode = modeRanged
		b.opts.Ranges.honoured.Store(true)
		var runs [][2]int
		var bgs []*run
		for _, k := range queued {
			bg := b.chunks[k].run
			if n := len(runs); n > 0 && runs[n-1][1] == k && bgs[n-1] == bg && b.runBytes(runs[n-1][0], k+1) <= maxRun {
				runs[n-1][1] = k + 1
			} else {
				runs = append(runs, [2]int{k, k + 1})
				bgs = append(bgs, bg)
			}
		}
		b.mu.Unlock()
		for n, r := range runs {
			go b.fetch(r[0], r[1], bgs[n])
		}
		return rc, false, nil
	}
	b.mode = modeStream
	b.opts.Ranges.ignored.Store(true)
	adopt := b.stream == nil
	s := b.streamForLocked(0)
	b.startPending = b.startPending && !adopt // this goroutine runs it
	for _, k := range append(queued, rangeOf(i, j)...) {
		b.chunks[k].run = b.streamForLocked(k).run
	}
	b.mu.Unlock()
	b.opts.Logger.Info("the cache ignores Range: the indexed path's object is read once, as a stream",
		"url", b.x.URL, "bytes", b.x.FileSize)
	if !adopt {
		rc.Close() // a stream is already under way
		return nil, true, nil
	}
	if b.opts.OnFetch != nil {
		b.opts.OnFetch(b.x.FileSize - n) // the rest of the object
	}
	b.runStreams(s, rc) // within ctx, which outlives it
	return nil, true, nil
}

func rangeOf(i, j int) []int {
	r := make([]int, 0, j-i)
	for k := i; k < j; k++ {
		r = append(r, k)
	}
	return r
}

// runStreams reads the object with stream s (from body, the answer
// already at hand, when not nil), then with each stream started for
// chunks it had passed, until none is left.
func (b *Blob) runStreams(s *stream, body io.ReadCloser) {
	if b.opts.Hold != nil {
		defer b.opts.Hold()()
	}
	for s != nil {
		err := b.readStream(s, body)
		body = nil
		s = b.endStream(s, err)
	}
}

// readStream reads the object from its start, settling the chunks s
// owns and claiming every other missing one it passes.
func (b *Blob) readStream(s *stream, body io.ReadCloser) error {
	if body == nil {
		ctx, cancel := context.WithTimeout(b.bg, b.opts.FetchDeadline(b.x.FileSize))
		defer cancel()
		if b.opts.OnFetch != nil {
			b.opts.OnFetch(b.x.FileSize)
		}
		rc, _, err := backend.GetRangeOrWhole(ctx, b.src, b.x.URL, 0, b.x.FileSize)
		if err != nil {
			b.opts.Logger.Warn("reading the object as a stream failed", "url", b.x.URL, "err", err)
			return err
		}
		body = rc
	}
	defer body.Close()
	sp, op := chunkBufs.Get().(*[]byte), chunkBufs.Get().(*[]byte)
	stored, out := (*sp)[:0], (*op)[:0]
	defer func() {
		*sp, *op = stored[:0], out[:0]
		chunkBufs.Put(sp)
		chunkBufs.Put(op)
	}()
	var pos int64
	for k, c := range b.x.Chunks {
		if c.FileOffset != pos {
			return fmt.Errorf("chunk %d at object offset %d, the stream is at %d", k, c.FileOffset, pos)
		}
		b.mu.Lock()
		s.next = k + 1
		ch := &b.chunks[k]
		mine := ch.st == inflight && ch.run == s.run
		if !mine && (ch.st == missing || ch.st == claimed) && !time.Now().Before(ch.failedUntil) {
			// Passing by anyway: keep it, or it costs the prefix again.
			ch.st, ch.done, ch.run = inflight, make(chan struct{}), s.run
			mine = true
		}
		b.mu.Unlock()
		if int64(cap(stored)) < c.FileLen {
			stored = make([]byte, c.FileLen)
		}
		stored = stored[:c.FileLen]
		if _, err := io.ReadFull(body, stored); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			err = fmt.Errorf("object %s at %d: %w", b.x.URL, pos, err)
			b.opts.Logger.Warn("the object's stream broke", "err", err)
			return err
		}
		pos += c.FileLen
		if !mine {
			continue
		}
		var err error
		out, err = b.x.DecodeChunk(out[:0], c, stored)
		if err != nil {
			// The chunk's bytes are wrong, not the stream: go on.
			b.opts.Logger.Error("chunk failed verification; not served", "url", b.x.URL, "nar-offset", c.NarOffset, "err", err)
			b.settle(k, false, err)
			continue
		}
		if err := b.write(k, c, out); err != nil {
			b.settle(k, false, err)
			return err
		}
		b.settle(k, true, nil)
	}
	return nil
}

// endStream settles what s was to settle and did not with its error, and
// returns the stream to run next, if chunks were left for one.
func (b *Blob) endStream(s *stream, err error) *stream {
	if err == nil {
		err = errRetry // cannot happen: a complete stream settled all its own
	}
	b.mu.Lock()
	var left []int
	for k := range b.chunks {
		if c := &b.chunks[k]; c.st == inflight && c.run == s.run {
			left = append(left, k)
		}
	}
	next := b.nextStream
	b.stream, b.nextStream = next, nil
	b.mu.Unlock()
	for _, k := range left {
		b.settle(k, false, err)
	}
	return next
}
