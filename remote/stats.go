package remote

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"time"

	"github.com/narfs/narfs/remote/backend"
)

// Stats counts what narfs asked of the cache and served, from the start:
// the amplification of a workload is UpstreamBytes / the bytes it read.
type Stats struct {
	NarinfoGets int64 // GETs of <hash>.narinfo
	ListingGets int64 // GETs of <hash>.ls
	IndexGets   int64 // GETs of chunk indexes (.nidx)
	NarGets     int64 // GETs of NAR files; a parallel download counts once
	// NarParts is the ranged requests of parallel NAR downloads.
	NarParts  int64
	OtherGets int64
	// ChunkBytes is the stored bytes of NAR chunks requested by ranged
	// reads of indexed paths (their GETs count in NarGets).
	ChunkBytes    int64
	UpstreamBytes int64 // body bytes received from the cache, all objects
	NarBytes      int64 // body bytes of NAR objects (compressed, as sent)
	Fetches       int64 // NARs fetched, verified and extracted
	Corrupt       int64 // NARs that failed verification

	// Upstream is the requests, failures and body bytes by kind of
	// object, indexed by Kind.
	Upstream [NumKinds]KindStats
	// Lookups counts narinfo lookups by outcome, indexed by Outcome.
	Lookups [NumOutcomes]int64

	CacheHits, CacheMisses int64 // local cache lookups of extracted NARs
	Evictions              int64 // local cache entries evicted to make room
}

// KindStats is the upstream traffic of one kind of object.
type KindStats struct {
	Requests int64
	Errors   int64 // failed requests and bodies cut short; not-found is not an error
	Bytes    int64
}

// Kind is what an upstream object is, for counting.
type Kind int

// The kinds of upstream objects.
const (
	KindNarinfo Kind = iota
	KindListing
	KindIndex
	KindNar
	KindOther
	NumKinds
)

var kindNames = [NumKinds]string{"narinfo", "listing", "index", "nar", "other"}

func (k Kind) String() string { return kindNames[k] }

// Outcome is how a narinfo lookup ended.
type Outcome int

// The outcomes of narinfo lookups.
const (
	OutcomeHit       Outcome = iota // a trusted narinfo (from memory, the local record or the cache)
	OutcomeMiss                     // the cache does not hold it
	OutcomeNegative                 // answered by the negative cache
	OutcomeUntrusted                // held, but no trusted signature
	OutcomeError                    // anything else (network, corrupt narinfo, timeout)
	NumOutcomes
)

var outcomeNames = [NumOutcomes]string{"hit", "miss", "negative", "untrusted", "error"}

func (o Outcome) String() string { return outcomeNames[o] }

// RequestObserver is told the latency of every upstream request (to its
// response headers or first byte, not the whole body) and its error.
// cache is the redacted URL of the cache asked.
type RequestObserver func(cache string, kind Kind, d time.Duration, err error)

type counters struct {
	narinfoGets, listingGets, narGets, otherGets atomic.Int64
	indexGets, chunkBytes, narParts              atomic.Int64
	upstreamBytes, narBytes                      atomic.Int64
	fetches, corrupt                             atomic.Int64

	kinds    [NumKinds]kindCounters
	lookups  [NumOutcomes]atomic.Int64
	observer RequestObserver // read-only after Open; may be nil
	cache    string          // the redacted store URL, for observer
}

type kindCounters struct {
	requests, errors, bytes atomic.Int64
}

func (c *counters) snapshot() Stats {
	s := Stats{
		NarinfoGets:   c.narinfoGets.Load(),
		ListingGets:   c.listingGets.Load(),
		NarGets:       c.narGets.Load(),
		NarParts:      c.narParts.Load(),
		OtherGets:     c.otherGets.Load(),
		IndexGets:     c.indexGets.Load(),
		ChunkBytes:    c.chunkBytes.Load(),
		UpstreamBytes: c.upstreamBytes.Load(),
		NarBytes:      c.narBytes.Load(),
		Fetches:       c.fetches.Load(),
		Corrupt:       c.corrupt.Load(),
	}
	for k := range c.kinds {
		s.Upstream[k] = KindStats{
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
func (c *counters) lookup(err error, negative bool) {
	o := OutcomeHit
	switch {
	case err == nil:
	case negative:
		o = OutcomeNegative
	case errors.Is(err, ErrUntrusted):
		o = OutcomeUntrusted
	case errors.Is(err, ErrNotFound):
		o = OutcomeMiss
	default:
		o = OutcomeError
	}
	c.lookups[o].Add(1)
}

// countingBackend counts requests by kind and the bytes their bodies
// carried; every object narfs reads goes through it.
type countingBackend struct {
	backend.Backend
	c *counters
	// parts counts GetRange as parts of a parallel download, which
	// counted once in narGets when it started.
	parts bool
}

func kindOf(key string) Kind {
	switch {
	case strings.HasSuffix(key, ".narinfo"):
		return KindNarinfo
	case strings.HasSuffix(key, ".ls"):
		return KindListing
	case strings.HasSuffix(key, ".nidx"):
		return KindIndex
	case key == "nix-cache-info":
		return KindOther
	default:
		return KindNar
	}
}

func (b countingBackend) gets(k Kind) *atomic.Int64 {
	switch k {
	case KindNarinfo:
		return &b.c.narinfoGets
	case KindListing:
		return &b.c.listingGets
	case KindIndex:
		return &b.c.indexGets
	case KindNar:
		return &b.c.narGets
	}
	return &b.c.otherGets
}

// start counts a request of key; done, called with the request's error,
// counts a failure and reports the latency.
func (b countingBackend) start(key string) (Kind, func(error)) {
	k := kindOf(key)
	if b.parts {
		b.c.narParts.Add(1)
	} else {
		b.gets(k).Add(1)
	}
	b.c.kinds[k].requests.Add(1)
	t0 := time.Now()
	return k, func(err error) {
		if err != nil && !errors.Is(err, ErrNotFound) {
			b.c.kinds[k].errors.Add(1)
		}
		if b.c.observer != nil {
			b.c.observer(b.c.cache, k, time.Since(t0), err)
		}
	}
}

func (b countingBackend) Get(ctx context.Context, key string) (*backend.Object, error) {
	k, done := b.start(key)
	obj, err := b.Backend.Get(ctx, key)
	done(err)
	if err != nil {
		return nil, err
	}
	obj.Body = &countingBody{ReadCloser: obj.Body, c: b.c, kind: k}
	return obj, nil
}

func (b countingBackend) GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	k, done := b.start(key)
	backend.OnWhole(ctx, func(rc io.ReadCloser) io.ReadCloser { return &countingBody{ReadCloser: rc, c: b.c, kind: k} })
	rc, err := b.Backend.GetRange(ctx, key, off, n)
	if errors.Is(err, backend.ErrWholeAnswer) {
		done(nil) // an answer, read by GetRangeOrWhole's caller
	} else {
		done(err)
	}
	if err != nil {
		return nil, err
	}
	return &countingBody{ReadCloser: rc, c: b.c, kind: k}, nil
}

type countingBody struct {
	io.ReadCloser
	c      *counters
	kind   Kind
	failed bool // a body error was counted
}

func (r *countingBody) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	r.c.upstreamBytes.Add(int64(n))
	r.c.kinds[r.kind].bytes.Add(int64(n))
	if r.kind == KindNar {
		r.c.narBytes.Add(int64(n))
	}
	if err != nil && err != io.EOF && !r.failed {
		r.failed = true
		r.c.kinds[r.kind].errors.Add(1)
	}
	return n, err
}

// add sums o into st, for the caches of a Substituters.
func (st *Stats) add(o Stats) {
	st.NarinfoGets += o.NarinfoGets
	st.ListingGets += o.ListingGets
	st.IndexGets += o.IndexGets
	st.NarGets += o.NarGets
	st.NarParts += o.NarParts
	st.OtherGets += o.OtherGets
	st.ChunkBytes += o.ChunkBytes
	st.UpstreamBytes += o.UpstreamBytes
	st.NarBytes += o.NarBytes
	st.Fetches += o.Fetches
	st.Corrupt += o.Corrupt
	for k := range st.Upstream {
		st.Upstream[k].Requests += o.Upstream[k].Requests
		st.Upstream[k].Errors += o.Upstream[k].Errors
		st.Upstream[k].Bytes += o.Upstream[k].Bytes
	}
	for i := range st.Lookups {
		st.Lookups[i] += o.Lookups[i]
	}
	st.CacheHits += o.CacheHits
	st.CacheMisses += o.CacheMisses
	st.Evictions += o.Evictions
}
