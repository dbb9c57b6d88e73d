package upstream

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"time"

	"github.com/narfs/narfs/remote/backend"
	"github.com/narfs/narfs/remote/narinfo"
	"github.com/narfs/narfs/remote/stats"
)

// Counters counts what was asked of one cache and what became of it.
// Fetches, Corrupt and ChunkBytes are bumped by the parts that fetch,
// verify and read what the cache sent; the rest by this package.
type Counters struct {
	Fetches    atomic.Int64 // NARs fetched, verified and extracted
	Corrupt    atomic.Int64 // NARs (or chunks) that failed verification
	ChunkBytes atomic.Int64 // stored bytes of chunks requested by indexed reads

	narinfoGets, listingGets, narGets, otherGets atomic.Int64
	indexGets, narParts                          atomic.Int64
	upstreamBytes, narBytes                      atomic.Int64

	kinds    [stats.NumKinds]kindCounters
	lookups  [stats.NumOutcomes]atomic.Int64
	observer stats.Observer // read-only after Open; may be nil
	cache    string         // the redacted store URL, for observer
}

type kindCounters struct {
	requests, errors, bytes atomic.Int64
}

// Snapshot returns the counters now (the local cache's fields are zero:
// the cache does not own them).
func (c *Counters) Snapshot() stats.Stats {
	s := stats.Stats{
		NarinfoGets:   c.narinfoGets.Load(),
		ListingGets:   c.listingGets.Load(),
		NarGets:       c.narGets.Load(),
		NarParts:      c.narParts.Load(),
		OtherGets:     c.otherGets.Load(),
		IndexGets:     c.indexGets.Load(),
		ChunkBytes:    c.ChunkBytes.Load(),
		UpstreamBytes: c.upstreamBytes.Load(),
		NarBytes:      c.narBytes.Load(),
		Fetches:       c.Fetches.Load(),
		Corrupt:       c.Corrupt.Load(),
	}
	for k := range c.kinds {
		s.Upstream[k] = stats.KindStats{
			Requests: c.kinds[k].requests.Load(),
			Errors:   c.kinds[k].errors.Load(),
			Bytes:    c.kinds[k].bytes.Load(),
		}
	}
	for o := range c.lookups {
		s.Lookups[o] = c.lookups[o].Load()
	}
	return s
}

// lookup counts a narinfo lookup's outcome from its error.
func (c *Counters) lookup(err error, negative bool) {
	o := stats.OutcomeHit
	switch {
	case err == nil:
	case negative:
		o = stats.OutcomeNegative
	case errors.Is(err, narinfo.ErrUntrusted):
		o = stats.OutcomeUntrusted
	case errors.Is(err, backend.ErrNotFound):
		o = stats.OutcomeMiss
	default:
		o = stats.OutcomeError
	}
	c.lookups[o].Add(1)
}

// Counted is a cache's backend with its counters. Every request goes
// through a view that its caller chose by the kind of object it asks
// for (For), so nothing is guessed from key names.
type Counted struct {
	be backend.Backend
	c  *Counters
}

// For is the backend whose every request counts as one of kind k.
func (b *Counted) For(k stats.Kind) backend.Backend { return counting{Backend: b.be, c: b.c, kind: k} }

// Parts is the backend for the ranged requests of a parallel NAR
// download, which counted once as a NAR GET when it started.
func (b *Counted) Parts() backend.Backend {
	return counting{Backend: b.be, c: b.c, kind: stats.KindNar, parts: true}
}

// counting counts requests of one kind and the bytes their bodies carried.
type counting struct {
	backend.Backend
	c     *Counters
	kind  stats.Kind
	parts bool // GetRange counts in narParts, not narGets
}

func (b counting) gets() *atomic.Int64 {
	switch b.kind {
	case stats.KindNarinfo:
		return &b.c.narinfoGets
	case stats.KindListing:
		return &b.c.listingGets
	case stats.KindIndex:
		return &b.c.indexGets
	case stats.KindNar:
		return &b.c.narGets
	}
	return &b.c.otherGets
}

// start counts a request; done, called with the request's error, counts
// a failure and reports the latency.
func (b counting) start() func(error) {
	k := b.kind
	if b.parts {
		b.c.narParts.Add(1)
	} else {
		b.gets().Add(1)
	}
	b.c.kinds[k].requests.Add(1)
	t0 := time.Now()
	return func(err error) {
		if err != nil && !errors.Is(err, backend.ErrNotFound) {
			b.c.kinds[k].errors.Add(1)
		}
		if b.c.observer != nil {
			b.c.observer(b.c.cache, k, time.Since(t0), err)
		}
	}
}

func (b counting) Get(ctx context.Context, key string) (*backend.Object, error) {
	done := b.start()
	obj, err := b.Backend.Get(ctx, key)
	done(err)
	if err != nil {
		return nil, err
	}
	obj.Body = &countingBody{ReadCloser: obj.Body, c: b.c, kind: b.kind}
	return obj, nil
}

func (b counting) GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	done := b.start()
	backend.OnWhole(ctx, func(rc io.ReadCloser) io.ReadCloser { return &countingBody{ReadCloser: rc, c: b.c, kind: b.kind} })
	rc, err := b.Backend.GetRange(ctx, key, off, n)
	if errors.Is(err, backend.ErrWholeAnswer) {
		done(nil) // an answer, read by GetRangeOrWhole's caller
	} else {
		done(err)
	}
	if err != nil {
		return nil, err
	}
	return &countingBody{ReadCloser: rc, c: b.c, kind: b.kind}, nil
}

type countingBody struct {
	io.ReadCloser
	c      *Counters
	kind   stats.Kind
	failed bool // a body error was counted
}

func (r *countingBody) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	r.c.upstreamBytes.Add(int64(n))
	r.c.kinds[r.kind].bytes.Add(int64(n))
	if r.kind == stats.KindNar {
		r.c.narBytes.Add(int64(n))
	}
	if err != nil && err != io.EOF && !r.failed {
		r.failed = true
		r.c.kinds[r.kind].errors.Add(1)
	}
	return n, err
}
