package remote

import (
	"context"
	"log/slog"
	"sync"

	"golang.org/x/sync/singleflight"

	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/remote/backend"
	"github.com/narfs/narfs/remote/internal/content"
	"github.com/narfs/narfs/remote/internal/pathstate"
)

// Store is one binary cache opened for reading. Safe for concurrent use.
//
// Its state is grouped by the part of the data path it serves, each an
// embedded part with its constructor (so s.x still names every field):
// upstreamPart (store_upstream.go) is the binary cache itself (network,
// trust, narinfos, indexes, liveness); contentPart (store_content.go) the
// local disk (entries, downloads, warm descriptors, blobs); aheadPart
// (ahead.go) the background lookahead and prefetch queues. What stays
// here is shared by all of them or is the core's own: configuration,
// listings and verification events, the container, lifecycle.
type Store struct {
	// read-only after Open
	cfg Config
	log *slog.Logger
	// group is the Substituters the store is one of (nil when opened
	// alone); set before the first lookup, read-only after.
	group *Substituters

	*upstreamPart
	*contentPart
	*aheadPart

	listingGroup singleflight.Group // by hash part
	listings     *pathstate.Table   // hash part → what is known, generations

	hooksMu    sync.Mutex // protects onVerified
	onVerified []func(*PathInfo, *nar.Listing)

	// bg ends when the Store closes: background work and flights stop.
	bg     context.Context
	stopBG context.CancelFunc
}

// openOne parses storeURL (Nix syntax), connects to the cache and reads its
// nix-cache-info, so that an unreachable or foreign cache fails here with
// one clear error rather than on the first lookup.
func openOne(ctx context.Context, storeURL string, cfg Config) (*Store, error) {
	cfg.setDefaults()
	return openCache(ctx, storeURL, cfg, nil)
}

// openCache is Open with the local disk of a Substituters (nil: its own).
func openCache(ctx context.Context, storeURL string, cfg Config, local *content.Store) (*Store, error) {
	u, err := backend.ParseStoreURL(storeURL)
	if err != nil {
		return nil, err
	}
	log := cfg.Logger.With("cache", u.String())
	s := &Store{
		cfg:      cfg,
		log:      log,
		listings: pathstate.New(cfg.ListingMemory),
	}
	s.bg, s.stopBG = context.WithCancel(context.Background())
	s.aheadPart = newAheadPart(s.bg, cfg, log)
	if s.contentPart, err = newContentPart(cfg, local); err != nil {
		s.stopBG()
		return nil, err
	}
	if s.upstreamPart, err = newUpstreamPart(ctx, s.bg, u, cfg, log, s.cache); err != nil {
		s.stopBG()
		if s.ownsLocal {
			s.local.Close()
		}
		return nil, err
	}
	return s, nil
}

// URL is the store URL with credentials redacted.
func (s *Store) URL() string { return s.url.String() }

// StoreDir is the store directory the cache's paths live under.
func (s *Store) StoreDir() string { return s.storeDir }

// Stats returns the upstream counters since Open.
func (s *Store) Stats() Stats {
	st := s.up.Counters().Snapshot()
	st.CacheHits, st.CacheMisses, st.Evictions = s.cache.Counts()
	return st
}

// Close stops background work and releases the backend's connections.
func (s *Store) Close() error {
	if s.ownsLocal {
		// The local disk's blobs read through s.be: they stop first.
		s.local.Stop()
	}
	s.stopBG()
	s.lookq.Wait()
	s.prefetchq.Wait()
	if s.ownsLocal {
		s.local.Close()
	}
	return s.up.Close()
}

// CacheUsage is the bytes of extracted NARs in the local cache.
func (s *Store) CacheUsage() int64 { return s.cache.Usage() }

// opContext bounds one user-facing operation (a lookup, an open) by
// Config.Timeout, retries included, unless the caller set an earlier
// deadline.
func (s *Store) opContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.cfg.Timeout)
}

// flightContext is the context of work shared by several callers: it
// outlives any one caller but not the operation's bound, nor the Store.
func (s *Store) flightContext(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.Timeout)
	stop := context.AfterFunc(s.bg, cancel)
	return ctx, func() { stop(); cancel() }
}
