package stats

import "time"

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
	CacheBytes             int64 // bytes of extracted NARs in the local cache now

	// Caches is each cache's own upstream traffic, in the order they are
	// asked (the core's Stats only; Add leaves it).
	Caches []Cache
}

// Cache is one binary cache's upstream traffic.
type Cache struct {
	URL      string // redacted
	Upstream [NumKinds]KindStats
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

// Observer is told the latency of every upstream request (to its
// response headers or first byte, not the whole body) and its error.
// cache is the redacted URL of the cache asked.
type Observer func(cache string, kind Kind, d time.Duration, err error)

// Add sums o's counters into st, for the caches of a core (not Caches,
// nor CacheBytes: the local cache's are counted once).
func (st *Stats) Add(o Stats) {
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
