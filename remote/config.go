package remote

import (
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/narfs/narfs/remote/backend"
	"github.com/narfs/narfs/remote/internal/tune"
	"github.com/narfs/narfs/remote/narinfo"
	"github.com/narfs/narfs/remote/stats"
)

// Config is what a caller decides about a store; the zero value plus a
// CacheDir is usable (signatures required, no trusted keys: only genuine
// content-addressed paths resolve).
type Config struct {
	// TrustedKeys verify narinfo signatures.
	TrustedKeys []narinfo.PublicKey
	// RequireSigs false accepts unsigned narinfos (Nix's require-sigs).
	// Store URL parameter trusted=true has the same effect.
	RequireSigs bool
	// CacheDir holds verified NAR contents (DefaultCacheDir when empty).
	CacheDir string
	// CacheSize caps the bytes of extracted NARs kept in CacheDir; least
	// recently used paths are evicted first. 0 means 10 GiB.
	CacheSize int64
	// NegativeTTL is how long a miss is remembered (default 1h, as Nix).
	NegativeTTL time.Duration
	// NarinfoCacheSize bounds the in-memory narinfo cache (default 65536).
	NarinfoCacheSize int
	// VerifiedMetadataOnly ignores the cache's .ls listings and takes all
	// metadata from verified NARs. A .ls is unsigned: whoever can write to
	// the cache (without the signing key) can make a trusted path show,
	// say, a symlink the NAR does not have until its NAR is fetched. The
	// price is a NAR download for the first stat of every path.
	VerifiedMetadataOnly bool
	// NoReferenceLookahead turns off the background lookups of a resolved
	// path's references (their narinfos and listings, transitively, 16 at
	// a time; never NARs), which otherwise make walking a closure cost no
	// round trip per path.
	NoReferenceLookahead bool
	// PrefetchReferences fetches the data of a path's references in the
	// background once the path's own data is fetched, so that walking a
	// closure overlaps downloads (at the cost of fetching what may never be
	// read). PrefetchJobs bounds the paths fetched at once (default 4).
	PrefetchReferences bool
	PrefetchJobs       int
	// Timeout bounds every user-facing operation (a lookup, a listing, an
	// open), retries included: a reader always has an answer within it.
	// Downloads shared by several readers go on past it while the server
	// keeps sending faster than Backend.MinRate. Default 30s.
	Timeout time.Duration
	// ProgressDeadlines bounds every request to the cache, retries
	// included, by Timeout until bytes arrive and then by Timeout plus its
	// bytes at Backend.MinRate (backend.ProgressDeadlines): a cache that
	// never answers costs Timeout, not every attempt's. For commands
	// without readers (prefetch); the mount leaves it off, as its
	// background chunk runs wait for a slot between a response's headers
	// and its body.
	ProgressDeadlines bool
	// ListingMemory bounds the bytes of listings kept in memory (default
	// 256 MiB); a single listing larger than a quarter of it is refused.
	ListingMemory int64
	// NarinfoTTL is how long a verified narinfo persisted in CacheDir is
	// used without asking the cache again (Nix's
	// narinfo-cache-positive-ttl, default 30 days). Past it, it is still
	// used when the cache cannot be reached.
	NarinfoTTL time.Duration
	// RecordNarinfos records every narinfo fetched in CacheDir, not only
	// those of paths whose data was fetched, and the path's chunk index
	// when the cache keeps one: for commands resolving paths that a mount
	// sharing CacheDir is about to read (narfs register).
	RecordNarinfos bool
	Logger         *slog.Logger
	// OnRequest, if set, is told the latency of every upstream request
	// (for metrics); it must be quick and safe for concurrent use.
	OnRequest stats.Observer
	Backend   backend.Options
	// Parallel tunes the parallel ranged download of a NAR object larger
	// than Parallel.FirstPart (1 MiB); SingleStream reads every NAR with
	// one GET instead. Without a Parallel.Pool, all downloads of a Core
	// (of all its caches) share one of Parallel.Budget
	// bytes: concurrent fetches (prefetch jobs, many readers) hold no
	// more part memory together than one does.
	Parallel     backend.ParallelOptions
	SingleStream bool
	// IndexedWholeMax: an indexed path stored in at most this many bytes
	// is fetched whole, in the background, from its first read on
	// (default DefaultIndexedWholeMax; negative: never, only what reads
	// need and their readahead).
	IndexedWholeMax int64
}

// DefaultCacheDir is $XDG_CACHE_HOME/narfs, ~/.cache/narfs, or
// /var/cache/narfs for root without a home.
func DefaultCacheDir() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "narfs")
	}
	return "/var/cache/narfs"
}

func (c *Config) setDefaults() {
	if c.IndexedWholeMax == 0 {
		c.IndexedWholeMax = DefaultIndexedWholeMax
	}
	if c.Parallel.Pool == nil {
		budget := c.Parallel.Budget
		if budget <= 0 {
			budget = backend.DefaultParallelBudget
		}
		part := c.Parallel.MaxPart
		if part <= 0 {
			part = backend.DefaultPartSize
		}
		c.Parallel.Pool = backend.NewPartPool(min(part, budget), budget)
	}
	if c.CacheDir == "" {
		c.CacheDir = DefaultCacheDir()
	}
	if c.CacheSize == 0 {
		c.CacheSize = tune.DefaultCacheSize
	}
	if c.NegativeTTL == 0 {
		c.NegativeTTL = tune.DefaultNegativeTTL
	}
	if c.NarinfoCacheSize == 0 {
		c.NarinfoCacheSize = tune.DefaultNarinfoCacheSize
	}
	if c.PrefetchJobs <= 0 {
		c.PrefetchJobs = tune.DefaultPrefetchJobs
	}
	if c.Timeout <= 0 {
		c.Timeout = tune.DefaultTimeout
	}
	if c.ListingMemory <= 0 {
		c.ListingMemory = tune.DefaultListingMemory
	}
	if c.NarinfoTTL <= 0 {
		c.NarinfoTTL = tune.DefaultNarinfoTTL
	}
	if c.Backend.RequestTimeout <= 0 {
		c.Backend.RequestTimeout = c.Timeout
	}
	if c.Backend.StallTimeout <= 0 {
		c.Backend.StallTimeout = c.Timeout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Backend.Logger == nil {
		c.Backend.Logger = c.Logger
	}
}

// MaxRead is the largest read a front end sends in one request (the FUSE
// mount's max_read); a file at least this large gets a file of its own in
// the local cache, which FUSE passthrough can hand to the kernel.
const MaxRead = tune.MaxRead
