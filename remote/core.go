package remote

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/remote/internal/content"
	"github.com/narfs/narfs/remote/internal/upstream"
	"github.com/narfs/narfs/remote/stats"
	"github.com/narfs/narfs/remote/storepath"
)

// Core is the binary caches one mount (or one `narfs ls`) reads,
// used the way Nix uses its substituters: ordered by priority (lower
// first; the cache's nix-cache-info Priority, overridden by the URL's
// ?priority=), ties in the order given. The first cache with a trusted
// narinfo for a hash serves that path, from lookup to the last read: a
// PathInfo remembers the cache that answered.
//
// Unlike Nix, which asks one substituter after the other, a lookup asks
// every cache at once and then takes the answers in priority order, so
// a miss costs one round trip, not one per cache. A cache that fails
// (unreachable, timing out, 5xx) costs at most one timeout: it is then
// skipped for downFor, answering only from what narfs recorded of it
// locally, and tried again after. One cache's failures never hide another
// cache's paths; a hash nobody had answers ErrNotFound only when every
// cache could be asked.
//
// All caches share one local cache (one size cap); NARs are keyed by
// their hash there, so a path held by two caches is fetched once.
//
// The front ends use: Resolve/ResolveHash/Paths for paths, Root, Lookup
// and VerifiedListing for metadata (Root and Lookup may answer from the
// cache's unsigned metadata: read Gen before, Subscribe to learn when a
// verified listing contradicted it, Forget when it is no longer shown),
// Open for a file's bytes (always the verified ones), Prefetch, Stats.
type Core struct {
	caches []*cache       // by priority; read-only after Open
	local  *content.Store // shared by caches
	log    *slog.Logger
}

// OpContext bounds one user-facing operation that waits on no cache
// itself (the mount's own bookkeeping) by Config.Timeout, like every
// operation on a cache.
func (g *Core) OpContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return g.caches[0].opContext(ctx)
}

// Open opens every cache in storeURLs (Nix syntax) with cfg.
// An unreachable cache does not fail it (its paths are served from the
// local cache until it answers); a malformed URL, refused credentials or
// a foreign cache does.
func Open(ctx context.Context, storeURLs []string, cfg Config) (*Core, error) {
	if len(storeURLs) == 0 {
		return nil, errors.New("no binary cache given")
	}
	cfg.setDefaults()
	local, err := newLocal(cfg)
	if err != nil {
		return nil, err
	}
	g := &Core{local: local, log: cfg.Logger}
	seen := map[string]bool{}
	for _, u := range storeURLs {
		c, err := newCache(ctx, g, u, cfg, local)
		if err != nil {
			g.Close()
			return nil, err
		}
		if seen[c.URL()] {
			c.close()
			continue // Nix, too, uses a substituter given twice once
		}
		seen[c.URL()] = true
		g.caches = append(g.caches, c)
	}
	// Stable: equal priorities keep the order given, as in Nix.
	slices.SortStableFunc(g.caches, func(a, b *cache) int { return cmp.Compare(a.priority, b.priority) })
	return g, nil
}

// URL is the caches' redacted URLs, in the order they are asked.
func (g *Core) URL() string {
	urls := make([]string, len(g.caches))
	for i, c := range g.caches {
		urls[i] = c.URL()
	}
	return strings.Join(urls, " ")
}

// StoreDir is the store directory the caches' paths live under.
func (g *Core) StoreDir() string { return storepath.DefaultStoreDir }

// Close stops every cache's background work and closes the local cache.
func (g *Core) Close() error {
	var errs []error
	g.local.Stop() // the shared blobs read through the caches' backends
	for _, c := range g.caches {
		errs = append(errs, c.close())
	}
	errs = append(errs, g.local.Close())
	return errors.Join(errs...)
}

// Stats sums every cache's counters (the local cache's are counted
// once) and lists each cache's upstream traffic.
func (g *Core) Stats() stats.Stats {
	var st stats.Stats
	st.Caches = make([]stats.Cache, len(g.caches))
	for i, c := range g.caches {
		cs := c.up.Counters().Snapshot()
		st.Add(cs)
		st.Caches[i] = stats.Cache{URL: c.URL(), Upstream: cs.Upstream}
	}
	st.CacheHits, st.CacheMisses, st.Evictions = g.local.Counts()
	st.CacheBytes = g.local.Usage()
	return st
}

// Resolve maps a store path base name to the trusted narinfo of the first
// cache, in priority order, that has one (see cache.resolve).
func (g *Core) Resolve(ctx context.Context, base string) (*PathInfo, error) {
	if _, err := storepath.Parse(base); err != nil {
		return nil, fmt.Errorf("%s: %w (%v)", base, ErrNotFound, err)
	}
	return g.first(ctx, base, func(c *cache) (*PathInfo, error) { return c.resolve(ctx, base) })
}

// LookAhead queues a background lookup of p's listing (a chunk index or
// a .ls; never a NAR), for front ends whose clients ask for a path before
// they read it: a Nix daemon's client asks for a build input's metadata,
// then the build opens its files, and the first open need not wait for
// the index's round trip and decoding. Each path is looked up once, like
// the references every resolution looks up.
func (g *Core) LookAhead(p *PathInfo) {
	if p.src != nil {
		p.src.ahead.expect(p)
	}
}

// ResolveHash is Resolve by hash part alone.
func (g *Core) ResolveHash(ctx context.Context, hash string) (*PathInfo, error) {
	if !storepath.ValidHashPart(hash) {
		return nil, fmt.Errorf("%s: %w (not a store path hash)", hash, ErrNotFound)
	}
	return g.first(ctx, hash, func(c *cache) (*PathInfo, error) {
		pi, err := c.resolveHash(ctx, hash)
		if err == nil {
			c.ahead.lookahead(pi)
		}
		return pi, err
	})
}

// first asks every cache at once and returns the answer of the first, in
// priority order, that has the path. A skipped cache answers from its
// local records only. The error, when nobody has it, is the most telling
// one: a cache that could not be asked outranks a corrupt narinfo, which
// outranks an untrusted one, which outranks a miss — a reader must not
// be told "no such path" while a cache that may hold it is down.
func (g *Core) first(ctx context.Context, key string, lookup func(*cache) (*PathInfo, error)) (*PathInfo, error) {
	if len(g.caches) == 1 {
		return lookup(g.caches[0])
	}
	type answer struct {
		pi  *PathInfo
		err error
	}
	answers := make([]chan answer, len(g.caches))
	for i, c := range g.caches {
		ch := make(chan answer, 1)
		answers[i] = ch
		if err := c.up.Skipping(); err != nil {
			pi, lerr := c.localInfo(key)
			if lerr != nil {
				lerr = err
			}
			ch <- answer{pi, lerr}
			continue
		}
		go func() {
			pi, err := lookup(c)
			ch <- answer{pi, err}
		}()
	}
	var best error
	for i, c := range g.caches {
		a := <-answers[i]
		if a.err == nil {
			c.up.MarkUp()
			return a.pi, nil
		}
		if ctx.Err() != nil {
			return nil, a.err // the caller gave up: no verdict on the cache
		}
		switch {
		case isAnswer(a.err):
			c.up.MarkUp()
		case !errors.Is(a.err, upstream.ErrSkipped):
			c.up.MarkDown(a.err)
		}
		if best == nil || severity(a.err) > severity(best) {
			best = a.err
		}
	}
	return nil, best
}

// isAnswer reports whether err is the cache's verdict on a path rather
// than a failure to get one.
func isAnswer(err error) bool {
	return errors.Is(err, ErrNotFound) || errors.Is(err, ErrUntrusted) || errors.Is(err, ErrCorrupt)
}

func severity(err error) int {
	switch {
	case errors.Is(err, ErrNotFound):
		return 0
	case errors.Is(err, ErrUntrusted):
		return 1
	case errors.Is(err, ErrCorrupt):
		return 2
	}
	return 3
}

// Paths calls fn once for every trusted store path some listable cache
// holds, with the PathInfo Resolve would give. Caches that cannot be
// listed (plain HTTP) or fail are left out, with a warning for the
// latter; it fails only when no cache could be listed. The whole
// enumeration is one operation bounded by Config.Timeout: at the deadline
// it returns an error wrapping context.DeadlineExceeded, fn having seen
// the paths found until then.
func (g *Core) Paths(ctx context.Context, fn func(*PathInfo)) error {
	ctx, cancel := g.OpContext(ctx)
	defer cancel()
	if len(g.caches) == 1 {
		return g.caches[0].paths(ctx, fn)
	}
	type found struct {
		rank int
		p    *PathInfo
	}
	var (
		mu      sync.Mutex // protects byHash, exact
		byHash  = map[string]found{}
		exact   = true // every cache was listed: ranks decide, no lookup
		listed  int
		lastErr error
	)
	for rank, c := range g.caches {
		err := c.paths(ctx, func(p *PathInfo) {
			mu.Lock()
			defer mu.Unlock()
			if f, ok := byHash[p.Path.Hash]; !ok || rank < f.rank {
				byHash[p.Path.Hash] = found{rank, p}
			}
		})
		switch {
		case err == nil:
			listed++
		case errors.Is(err, ErrNotListable):
			exact = false
		default:
			exact = false
			lastErr = err
			g.log.Warn("listing a cache failed; its paths are left out of the store's root listing", "cache", c.URL(), "err", err)
		}
	}
	if listed == 0 {
		if lastErr == nil {
			lastErr = ErrNotListable
		}
		return lastErr
	}
	for h, f := range byHash {
		p := f.p
		if !exact && f.rank > 0 {
			// A cache that was not listed may hold it at a better rank.
			var err error
			if p, err = g.ResolveHash(ctx, h); err != nil {
				continue
			}
		}
		fn(p)
	}
	return ctx.Err()
}

// The operations on a resolved path go to the cache that resolved it.

// Root returns a store path's root node (see cache.root).
func (g *Core) Root(ctx context.Context, p *PathInfo) (*nar.Node, error) {
	return g.of(p).root(ctx, p)
}

// Lookup finds a node by slash-separated sub-path inside a store path.
func (g *Core) Lookup(ctx context.Context, p *PathInfo, sub string) (*nar.Node, error) {
	return g.of(p).lookup(ctx, p, sub)
}

// VerifiedListing returns the listing built from the store path's
// verified NAR (or its verified chunk index), fetching it if needed.
func (g *Core) VerifiedListing(ctx context.Context, p *PathInfo) (*nar.Listing, error) {
	v, err := g.of(p).verifiedListing(ctx, p)
	if err != nil {
		return nil, err
	}
	return v.Tree(), nil
}

// of is the cache that resolved p; a PathInfo made elsewhere (tests) goes
// to the first.
func (g *Core) of(p *PathInfo) *cache {
	if p.src != nil {
		return p.src
	}
	return g.caches[0]
}
