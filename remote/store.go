package remote

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/semaphore"
	"golang.org/x/sync/singleflight"

	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/remote/backend"
	"github.com/narfs/narfs/remote/blob"
	"github.com/narfs/narfs/remote/localcache"
	"github.com/narfs/narfs/remote/narinfo"
	"github.com/narfs/narfs/remote/storepath"
)

// maxSmallObject bounds narinfo and nix-cache-info bodies; real ones are
// well under a kilobyte.
const maxSmallObject = 1 << 20

// maxListing bounds a .ls download; a listing of a million files is
// ~100 MB. Tighter bounds follow from NarSize and Config.ListingMemory.
const maxListing = 256 << 20

// Store is one binary cache opened for reading. Safe for concurrent use.
type Store struct {
	// read-only after Open
	url      *backend.StoreURL
	be       backend.Backend
	cfg      Config
	log      *slog.Logger
	storeDir string
	trustAll bool // require-sigs=false or the URL's trusted=true
	cache    *localcache.Cache
	// ownsCache: the local cache is this store's alone, not shared by
	// Substituters, and closed with it.
	ownsCache bool
	recordNS  string // namespace of this cache's narinfos in the local cache
	priority  int    // lower is asked first (nix-cache-info, ?priority=)

	down downState // skipping the cache after a failure (Substituters)
	// group is the Substituters the store is one of (nil when opened
	// alone); set before the first lookup, read-only after.
	group *Substituters

	stats counters
	// noRanges is set once the cache failed to answer a ranged request
	// exactly: NARs are then read with one GET.
	noRanges atomic.Bool
	// ranges is what the cache does with range requests, as its blobs
	// (indexed paths) learnt it: one that ignores them is streamed.
	ranges blob.Ranges

	resolveGroup singleflight.Group // by hash part
	listingGroup singleflight.Group // by hash part
	fetches      entryFlights       // by flightKey

	narinfos *lru.Cache[string, *PathInfo] // hash part → trusted narinfo and verdict
	listings *listingCache                 // hash part → best known listing
	decoding *semaphore.Weighted           // memory of .ls decodes in progress
	negative *negativeCache                // hash part → why it is not visible
	failed   *negativeCache                // flightKey → why its download failed
	// verifiedIndexes: hash parts whose chunk index verified (recently;
	// IndexVerified also asks the local records).
	verifiedIndexes *lru.Cache[string, struct{}]

	hooksMu    sync.Mutex // protects onVerified
	onVerified []func(*PathInfo, *nar.Listing)

	ownChecked ownChecks // own files of entries found matching their recorded hash

	warmMu sync.Mutex           // protects warm and every warmBlob's mutable fields
	warm   map[string]*warmBlob // entry key → open blob of a fetched stock path

	blobsMu sync.Mutex          // protects blobs
	blobs   map[string]*blobRef // chunked key → open blob of an indexed path
	// publishSem bounds the copies of complete large files of indexed
	// paths into files of their own.
	publishSem chan struct{}
	publishing sync.WaitGroup // copies in progress; Close waits for them
	// background holds the decoding slots of indexed paths' background
	// fills (blob.Options.Background): all cores but one, at least one.
	background chan struct{}

	// Background work, stopped by Close: lookq looks up references'
	// narinfos and listings ahead of readers, prefetchq fetches their data
	// (Config.PrefetchReferences).
	lookq           *workQueue
	prefetchq       *workQueue
	lookaheadPaused *negativeCache // "" → why lookahead pauses
	aliases         indexAliases   // chunk indexes fetched with their narinfos
	bg              context.Context
	stopBG          context.CancelFunc
}

// Open parses storeURL (Nix syntax), connects to the cache and reads its
// nix-cache-info, so that an unreachable or foreign cache fails here with
// one clear error rather than on the first lookup.
func Open(ctx context.Context, storeURL string, cfg Config) (*Store, error) {
	cfg.setDefaults()
	return openCache(ctx, storeURL, cfg, nil)
}

// openCache is Open with the local cache of a Substituters (nil: its own).
func openCache(ctx context.Context, storeURL string, cfg Config, local *localcache.Cache) (*Store, error) {
	u, err := backend.ParseStoreURL(storeURL)
	if err != nil {
		return nil, err
	}
	be, err := backend.Open(ctx, u, cfg.Backend)
	if err != nil {
		return nil, err
	}
	s := &Store{
		url:      u,
		cfg:      cfg,
		log:      cfg.Logger.With("cache", u.String()),
		storeDir: storepath.DefaultStoreDir,
		trustAll: !cfg.RequireSigs || u.Params.Get("trusted") == "true" || u.Params.Get("trusted") == "1",
		negative: newNegativeCache(cfg.NegativeTTL),
		failed:   newNegativeCache(corruptMemo),
		listings: newListingCache(cfg.ListingMemory),
		decoding: semaphore.NewWeighted(cfg.ListingMemory),
		recordNS: recordNamespace(u.String()),

		blobs:           map[string]*blobRef{},
		warm:            map[string]*warmBlob{},
		publishSem:      make(chan struct{}, 1),
		background:      make(chan struct{}, max(1, runtime.GOMAXPROCS(0)-1)),
		lookaheadPaused: newNegativeCache(lookaheadPauseMin),
	}
	s.bg, s.stopBG = context.WithCancel(context.Background())
	// The lookahead's product is a narinfo in the narinfo LRU: it
	// remembers no more references than that LRU holds narinfos, so that
	// metadata queries of ever more paths (a daemon socket's clients) cost
	// no memory beyond the LRU's bound; a reference whose narinfo was
	// evicted is worth looking ahead again. Prefetches fetch data: their
	// queue remembers more, so a path's data is tried once.
	s.lookq = newWorkQueue(s.bg, lookaheadJobs, cfg.NarinfoCacheSize, s.log, "lookahead")
	s.prefetchq = newWorkQueue(s.bg, cfg.PrefetchJobs, seenMax, s.log, "prefetch")
	s.stats.observer = cfg.OnRequest
	s.stats.cache = u.String()
	if cfg.ProgressDeadlines {
		be = backend.ProgressDeadlines(be, cfg.Timeout, cfg.Backend.MinRate)
	}
	s.be = countingBackend{Backend: be, c: &s.stats}
	if s.narinfos, err = lru.New[string, *PathInfo](cfg.NarinfoCacheSize); err != nil {
		return nil, err
	}
	if s.verifiedIndexes, err = lru.New[string, struct{}](max(cfg.NarinfoCacheSize, 1<<14)); err != nil {
		return nil, err
	}
	s.cache, s.ownsCache = local, local == nil
	if s.ownsCache {
		if s.cache, err = localcache.Open(cfg.CacheDir, cfg.CacheSize, s.log); err != nil {
			s.stopBG()
			be.Close()
			return nil, err
		}
	}
	fail := func(err error) (*Store, error) {
		s.stopBG()
		be.Close()
		if s.ownsCache {
			s.cache.Close()
		}
		return nil, err
	}
	priority, err := s.checkCacheInfo(ctx)
	if err != nil {
		return fail(err)
	}
	if s.priority, err = priorityOf(u, priority); err != nil {
		return fail(err)
	}
	return s, nil
}

// checkCacheInfo also returns the cache's Priority (0 when it has none or
// cannot be reached).
func (s *Store) checkCacheInfo(ctx context.Context) (priority int, err error) {
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	data, err := backend.ReadAll(ctx, s.be, "nix-cache-info", maxSmallObject)
	if errors.Is(err, ErrNotFound) {
		// Nix writes the file when it creates a cache; a reader can live
		// without it, but a wrong URL usually looks exactly like this.
		s.log.Warn("cache has no nix-cache-info; is this a binary cache?")
		return 0, nil
	}
	if err != nil {
		if errors.Is(err, backend.ErrAuth) || errors.Is(err, backend.ErrInvalidKey) {
			return 0, fmt.Errorf("open %s: %w", s.url, err)
		}
		// Down or unreachable: paths already in the local cache can still
		// be served, so start anyway; lookups of the others fail within
		// the timeout until it is back.
		s.log.Warn("cache unreachable; serving what the local cache holds until it answers", "err", err)
		return 0, nil
	}
	info, err := narinfo.ParseCacheInfo(data)
	if err != nil {
		return 0, fmt.Errorf("open %s: nix-cache-info: %w", s.url, err)
	}
	if info.IndexAliases {
		s.aliases.on.Store(true)
	}
	if info.StoreDir != "" && info.StoreDir != s.storeDir {
		return 0, fmt.Errorf("open %s: binary cache is for Nix stores with prefix %q, not %q", s.url, info.StoreDir, s.storeDir)
	}
	return info.Priority, nil
}

// URL is the store URL with credentials redacted.
func (s *Store) URL() string { return s.url.String() }

// StoreDir is the store directory the cache's paths live under.
func (s *Store) StoreDir() string { return s.storeDir }

// Stats returns the upstream counters since Open.
func (s *Store) Stats() Stats {
	st := s.stats.snapshot()
	st.CacheHits, st.CacheMisses, st.Evictions = s.cache.Counts()
	return st
}

// Close stops background work and releases the backend's connections.
func (s *Store) Close() error {
	// Under blobsMu: publishOwn checks bg and registers its copy under it,
	// so no copy starts after the Wait below.
	s.blobsMu.Lock()
	s.stopBG()
	s.blobsMu.Unlock()
	s.lookq.wait()
	s.prefetchq.wait()
	s.aliases.wg.Wait()
	s.publishing.Wait()
	s.blobsMu.Lock()
	for k, r := range s.blobs {
		r.b.Close()
		r.e.Release()
		delete(s.blobs, k)
	}
	s.blobsMu.Unlock()
	s.closeWarm()
	if s.ownsCache {
		s.cache.Close()
	}
	return s.be.Close()
}

// CacheUsage is the bytes of extracted NARs in the local cache.
func (s *Store) CacheUsage() int64 { return s.cache.Usage() }
