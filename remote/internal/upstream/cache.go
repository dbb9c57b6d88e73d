package upstream

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/semaphore"
	"golang.org/x/sync/singleflight"

	"github.com/narfs/narfs/remote/backend"
	"github.com/narfs/narfs/remote/blob"
	"github.com/narfs/narfs/remote/internal/memo"
	"github.com/narfs/narfs/remote/internal/trust"
	"github.com/narfs/narfs/remote/internal/tune"
	"github.com/narfs/narfs/remote/localcache"
	"github.com/narfs/narfs/remote/narinfo"
	"github.com/narfs/narfs/remote/stats"
	"github.com/narfs/narfs/remote/storepath"
)

// Options is what a Cache takes of the core's configuration.
type Options struct {
	Keys              []narinfo.PublicKey
	RequireSigs       bool
	ProgressDeadlines bool
	Timeout           time.Duration // one operation, retries included
	NegativeTTL       time.Duration
	NarinfoTTL        time.Duration // age below which a local record answers without asking
	RecordAll         bool          // record every narinfo fetched (and its chunk index), not only RecordNarinfo's
	NarinfoCacheSize  int
	ListingMemory     int64 // bounds .ls and index decodes (and a single one to a share of it)
	Backend           backend.Options
	Parallel          backend.ParallelOptions
	SingleStream      bool
	Observer          stats.Observer // may be nil
	Logger            *slog.Logger   // already naming the cache
	// Background, when it ends, ends the cache's background work and
	// shared flights before Close (nil: only Close does).
	Background context.Context
	// Ranges is what the cache does with range requests, shared with the
	// blobs reading its chunks (nil: the cache's own).
	Ranges *blob.Ranges
}

// Cache is one binary cache: its backend and what is known of it (trust
// verdicts, narinfos, chunk indexes, ranges, liveness, counters). Safe
// for concurrent use.
type Cache struct {
	// read-only after Open
	url      *backend.StoreURL
	raw      backend.Backend // progress deadlines, not counted: Close
	counted  *Counted
	counters *Counters
	o        Options
	log      *slog.Logger
	storeDir string
	trustAll bool   // require-sigs=false or the URL's trusted=true
	recordNS string // namespace of this cache's records in the local cache
	priority int    // lower is asked first (nix-cache-info, ?priority=)
	records  *localcache.Cache

	down downState // skipping the cache after a failure
	// noRanges is set once the cache failed to answer a ranged request
	// exactly: NARs are then read with one GET.
	noRanges atomic.Bool
	ranges   *blob.Ranges

	resolve  singleflight.Group              // by hash part
	narinfos *lru.Cache[string, *trust.Path] // hash part → trusted narinfo and verdict
	negative *memo.Memo                      // hash part → why it is not visible
	// indexFailed: hash part → why its index failed recently.
	indexFailed *memo.Memo
	// verifiedIndexes: hash parts whose chunk index verified (recently;
	// IndexRecorded also asks the local records).
	verifiedIndexes *lru.Cache[string, struct{}]
	decoding        *semaphore.Weighted // memory of .ls and index decodes in progress
	aliases         indexAliases        // chunk indexes fetched with their narinfos

	// bg ends when the cache closes (or Options.Background ends).
	bg   context.Context
	stop context.CancelFunc
}

// Open connects to the cache at u and reads its nix-cache-info, so that an
// unreachable or foreign cache fails here with one clear error rather than
// on the first lookup. records is the local cache keeping narinfos and
// indexes of fetched paths.
func Open(ctx context.Context, u *backend.StoreURL, o Options, records *localcache.Cache) (*Cache, error) {
	be, err := backend.Open(ctx, u, o.Backend)
	if err != nil {
		return nil, err
	}
	if o.ProgressDeadlines {
		be = backend.ProgressDeadlines(be, o.Timeout, o.Backend.MinRate)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	c := &Cache{
		url:         u,
		raw:         be,
		counters:    &Counters{observer: o.Observer, cache: u.String()},
		o:           o,
		log:         o.Logger,
		storeDir:    storepath.DefaultStoreDir,
		trustAll:    !o.RequireSigs || u.Params.Get("trusted") == "true" || u.Params.Get("trusted") == "1",
		recordNS:    recordNamespace(u.String()),
		records:     records,
		ranges:      o.Ranges,
		negative:    memo.New(o.NegativeTTL),
		indexFailed: memo.New(tune.CorruptMemo),
		decoding:    semaphore.NewWeighted(o.ListingMemory),
	}
	if c.ranges == nil {
		c.ranges = new(blob.Ranges)
	}
	c.counted = &Counted{be: be, c: c.counters}
	parent := o.Background
	if parent == nil {
		parent = context.Background()
	}
	c.bg, c.stop = context.WithCancel(parent)
	fail := func(err error) (*Cache, error) {
		c.stop()
		be.Close()
		return nil, err
	}
	if c.narinfos, err = lru.New[string, *trust.Path](o.NarinfoCacheSize); err != nil {
		return fail(err)
	}
	if c.verifiedIndexes, err = lru.New[string, struct{}](max(o.NarinfoCacheSize, tune.VerifiedIndexesMin)); err != nil {
		return fail(err)
	}
	priority, err := c.checkCacheInfo(ctx)
	if err != nil {
		return fail(err)
	}
	if c.priority, err = priorityOf(u, priority); err != nil {
		return fail(err)
	}
	return c, nil
}

// checkCacheInfo also returns the cache's Priority (0 when it has none or
// cannot be reached).
func (c *Cache) checkCacheInfo(ctx context.Context) (priority int, err error) {
	ctx, cancel := c.OpContext(ctx)
	defer cancel()
	data, err := backend.ReadAll(ctx, c.counted.For(stats.KindOther), "nix-cache-info", tune.MaxSmallObject)
	if errors.Is(err, backend.ErrNotFound) {
		// Nix writes the file when it creates a cache; a reader can live
		// without it, but a wrong URL usually looks exactly like this.
		c.log.Warn("cache has no nix-cache-info; is this a binary cache?")
		return 0, nil
	}
	if err != nil {
		if errors.Is(err, backend.ErrAuth) || errors.Is(err, backend.ErrInvalidKey) {
			return 0, fmt.Errorf("open %s: %w", c.url, err)
		}
		// Down or unreachable: paths already in the local cache can still
		// be served, so start anyway; lookups of the others fail within
		// the timeout until it is back.
		c.log.Warn("cache unreachable; serving what the local cache holds until it answers", "err", err)
		return 0, nil
	}
	info, err := narinfo.ParseCacheInfo(data)
	if err != nil {
		return 0, fmt.Errorf("open %s: nix-cache-info: %w", c.url, err)
	}
	if info.IndexAliases {
		c.aliases.on.Store(true)
	}
	if info.StoreDir != "" && info.StoreDir != c.storeDir {
		return 0, fmt.Errorf("open %s: binary cache is for Nix stores with prefix %q, not %q", c.url, info.StoreDir, c.storeDir)
	}
	return info.Priority, nil
}

// priorityOf is the URL's ?priority= if it has one, else the cache's own.
func priorityOf(u *backend.StoreURL, fromCache int) (int, error) {
	v := u.Params.Get("priority")
	if v == "" {
		return fromCache, nil
	}
	p, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("%s: priority=%q is not an integer", u, v)
	}
	return p, nil
}

// recordNamespace separates the local records of different caches sharing
// one cache dir: a narinfo is only as good as the cache it came from.
func recordNamespace(storeURL string) string {
	d := sha256.Sum256([]byte(storeURL))
	return hex.EncodeToString(d[:8])
}

// Close stops background work (index aliases in flight) and releases the
// backend's connections.
func (c *Cache) Close() error {
	c.stop()
	c.aliases.wg.Wait()
	return c.raw.Close()
}

// URL is the store URL with credentials redacted.
func (c *Cache) URL() string { return c.url.String() }

// StoreDir is the store directory the cache's paths live under.
func (c *Cache) StoreDir() string { return c.storeDir }

// Priority orders caches: lower is asked first.
func (c *Cache) Priority() int { return c.priority }

// Counters returns the cache's counters, for the parts that bump the
// ones this package does not (fetches, corrupt NARs, chunk bytes).
func (c *Cache) Counters() *Counters { return c.counters }

// Chunks is the backend blobs read NAR chunks from (counted as NAR GETs).
func (c *Cache) Chunks() backend.Backend { return c.counted.For(stats.KindNar) }

// Ranges is what the cache does with range requests, as its NAR
// downloads and blobs learnt it.
func (c *Cache) Ranges() *blob.Ranges { return c.ranges }

// OpContext bounds one user-facing operation (a lookup, an open) by
// Options.Timeout, retries included, unless the caller set an earlier
// deadline.
func (c *Cache) OpContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.o.Timeout)
}

// FlightContext is the context of work shared by several callers: it
// outlives any one caller but not the operation's bound, nor the cache.
func (c *Cache) FlightContext(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.o.Timeout)
	stop := context.AfterFunc(c.bg, cancel)
	return ctx, func() { stop(); cancel() }
}
