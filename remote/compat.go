package remote

// Temporary (issue 20, S4 → S6d): the API before the Core, kept so that
// fs, cmd/narfs, nixdaemon and the tests build unchanged while they move
// to Core.Open, Stats, Subscribe. Deleted in S6d.

import (
	"context"

	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/remote/stats"
)

// Substituters is the Core under its old name.
type Substituters = Core

// OpenSubstituters is Open under its old name.
func OpenSubstituters(ctx context.Context, storeURLs []string, cfg Config) (*Core, error) {
	return Open(ctx, storeURLs, cfg)
}

// Caches is the caches in the order they are asked.
func (g *Core) Caches() []*Store { return g.caches }

// CacheUsage is the bytes of NARs in the shared local cache.
func (g *Core) CacheUsage() int64 { return g.local.Usage() }

// Listing is Store.Listing in p's cache.
func (g *Core) Listing(ctx context.Context, p *PathInfo) (*nar.Listing, error) {
	return g.of(p).Listing(ctx, p)
}

// OpenFile is Store.OpenFile in p's cache.
func (g *Core) OpenFile(ctx context.Context, p *PathInfo, sub string) (*LocalFile, error) {
	return g.of(p).OpenFile(ctx, p, sub)
}

// OpenVerified is Store.OpenVerified in p's cache.
func (g *Core) OpenVerified(ctx context.Context, p *PathInfo, sub string) (*LocalFile, *nar.Node, error) {
	return g.of(p).OpenVerified(ctx, p, sub)
}

// OpenChunked is Store.OpenChunked in p's cache.
func (g *Core) OpenChunked(ctx context.Context, p *PathInfo, sub string) (*ChunkedFile, error) {
	return g.of(p).OpenChunked(ctx, p, sub)
}

// OnVerified registers fn with every cache (see Store.OnVerified).
func (g *Core) OnVerified(fn func(p *PathInfo, l *nar.Listing)) {
	for _, s := range g.caches {
		s.OnVerified(fn)
	}
}

// The counters' vocabulary lives in remote/stats; these names keep the
// old API (metrics tests, cmd/narfs) building.
type (
	Stats           = stats.Stats
	KindStats       = stats.KindStats
	Kind            = stats.Kind
	Outcome         = stats.Outcome
	RequestObserver = stats.Observer
)

// The kinds of upstream objects.
const (
	KindNarinfo = stats.KindNarinfo
	KindListing = stats.KindListing
	KindIndex   = stats.KindIndex
	KindNar     = stats.KindNar
	KindOther   = stats.KindOther
	NumKinds    = stats.NumKinds
)

// The outcomes of narinfo lookups.
const (
	OutcomeHit       = stats.OutcomeHit
	OutcomeMiss      = stats.OutcomeMiss
	OutcomeNegative  = stats.OutcomeNegative
	OutcomeUntrusted = stats.OutcomeUntrusted
	OutcomeError     = stats.OutcomeError
	NumOutcomes      = stats.NumOutcomes
)
