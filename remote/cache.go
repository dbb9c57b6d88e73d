package remote

import (
	"context"
	"log/slog"

	"golang.org/x/sync/singleflight"

	"github.com/narfs/narfs/remote/backend"
	"github.com/narfs/narfs/remote/blob"
	"github.com/narfs/narfs/remote/internal/content"
	"github.com/narfs/narfs/remote/internal/pathstate"
	"github.com/narfs/narfs/remote/internal/upstream"
	"github.com/narfs/narfs/remote/localcache"
)

// cache is one binary cache of a Core. Its parts: up
// (remote/internal/upstream) is the binary cache itself (network, trust,
// narinfos, indexes, liveness, counters); local (remote/internal/content)
// the local disk every cache of the Core shares; listings
// (remote/internal/pathstate) what is known of its paths, with their
// generations; ahead the background lookahead and prefetch queues.
// Listings are per cache: a .ls of one cache never answers for another,
// whose index declaration may forbid it (downgrade.go). Safe for
// concurrent use.
type cache struct {
	// read-only after newCache
	cfg      Config
	log      *slog.Logger
	up       *upstream.Cache
	url      *backend.StoreURL
	be       backend.Backend // up's, counting requests as NAR GETs: blob chunks
	priority int             // lower is asked first (nix-cache-info, ?priority=)
	// ranges is what the cache does with range requests, as its NAR
	// downloads and blobs (indexed paths) learnt it: one that ignores
	// them is streamed. up holds a pointer to it.
	ranges blob.Ranges

	local *content.Store    // the Core's, shared by its caches
	disk  *localcache.Cache // local's cache: records of narinfos and indexes
	ahead *ahead

	listingGroup singleflight.Group // by hash part
	listings     *pathstate.Table   // hash part → what is known, generations

	// bg ends when the cache closes: background work and flights stop.
	bg     context.Context
	stopBG context.CancelFunc
}

// newCache parses storeURL (Nix syntax), connects to the cache and reads
// its nix-cache-info, so that an unreachable or foreign cache fails here
// with one clear error rather than on the first lookup. local is the
// Core's local disk, g the Core (its caches' order, for the lookahead).
func newCache(ctx context.Context, g *Core, storeURL string, cfg Config, local *content.Store) (*cache, error) {
	u, err := backend.ParseStoreURL(storeURL)
	if err != nil {
		return nil, err
	}
	log := cfg.Logger.With("cache", u.String())
	c := &cache{
		cfg:      cfg,
		log:      log,
		url:      u,
		local:    local,
		disk:     local.Cache(),
		listings: pathstate.New(cfg.ListingMemory),
	}
	c.bg, c.stopBG = context.WithCancel(context.Background())
	c.ahead = newAhead(g, c)
	c.up, err = upstream.Open(ctx, u, upstream.Options{
		Keys:              cfg.TrustedKeys,
		RequireSigs:       cfg.RequireSigs,
		ProgressDeadlines: cfg.ProgressDeadlines,
		Timeout:           cfg.Timeout,
		NegativeTTL:       cfg.NegativeTTL,
		NarinfoTTL:        cfg.NarinfoTTL,
		RecordAll:         cfg.RecordNarinfos,
		NarinfoCacheSize:  cfg.NarinfoCacheSize,
		ListingMemory:     cfg.ListingMemory,
		Backend:           cfg.Backend,
		Parallel:          cfg.Parallel,
		SingleStream:      cfg.SingleStream,
		Observer:          cfg.OnRequest,
		Logger:            log,
		Background:        c.bg,
		Ranges:            &c.ranges,
	}, c.disk)
	if err != nil {
		c.stopBG()
		return nil, err
	}
	c.be = c.up.Chunks()
	c.priority = c.up.Priority()
	return c, nil
}

// URL is the store URL with credentials redacted.
func (c *cache) URL() string { return c.url.String() }

// close stops background work and releases the backend's connections.
// The Core stops the local disk's blobs (they read through c.be) first.
func (c *cache) close() error {
	c.stopBG()
	c.ahead.wait()
	return c.up.Close()
}

// opContext bounds one user-facing operation (a lookup, an open) by
// Config.Timeout, retries included, unless the caller set an earlier
// deadline.
func (c *cache) opContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.cfg.Timeout)
}

// flightContext is the context of work shared by several callers: it
// outlives any one caller but not the operation's bound, nor the cache.
func (c *cache) flightContext(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.Timeout)
	stop := context.AfterFunc(c.bg, cancel)
	return ctx, func() { stop(); cancel() }
}
