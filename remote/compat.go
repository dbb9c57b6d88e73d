package remote

// Temporary (issue 20, S4 → S6d): the API before the Core, kept so that
// fs, cmd/narfs and nixdaemon build unchanged while they move to
// Core.Open, Stats, Subscribe (package remote's own code and tests use
// none of it). Deleted in S6d, with cache.onVerified.

import (
	"context"

	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/remote/internal/content"
	"github.com/narfs/narfs/remote/stats"
)

// Substituters is the Core under its old name.
type Substituters = Core

// OpenSubstituters is Open under its old name.
func OpenSubstituters(ctx context.Context, storeURLs []string, cfg Config) (*Core, error) {
	return Open(ctx, storeURLs, cfg)
}

// CacheUsage is the bytes of NARs in the shared local cache.
func (g *Core) CacheUsage() int64 { return g.local.Usage() }

// Listing returns the best known tree of a store path: the verified one
// when its NAR has been fetched, else the cache's <hash>.ls (no NAR
// bytes), else the NAR is fetched.
func (g *Core) Listing(ctx context.Context, p *PathInfo) (*nar.Listing, error) {
	kl, err := g.of(p).listing(ctx, p, true)
	if err != nil {
		return nil, err
	}
	return kl.Listing, nil
}

// OpenFile opens a regular file of a store path from the local cache,
// fetching the NAR first if needed.
func (g *Core) OpenFile(ctx context.Context, p *PathInfo, sub string) (*LocalFile, error) {
	f, _, err := g.of(p).openVerified(ctx, p, sub)
	return f, err
}

// OpenVerified is OpenFile that also returns the file's node in the
// verified listing.
func (g *Core) OpenVerified(ctx context.Context, p *PathInfo, sub string) (*LocalFile, *nar.Node, error) {
	return g.of(p).openVerified(ctx, p, sub)
}

// OpenChunked opens a regular file of a path that has a valid chunk
// index; paths without one give ErrNotIndexed.
func (g *Core) OpenChunked(ctx context.Context, p *PathInfo, sub string) (*ChunkedFile, error) {
	return g.of(p).openChunked(ctx, p, sub)
}

// OnVerified registers fn with every cache: it is called, on the
// fetching goroutine, each time a store path's NAR (or chunk index) has
// been verified, with the listing built from it. fn must not block.
func (g *Core) OnVerified(fn func(p *PathInfo, l *nar.Listing)) {
	for _, c := range g.caches {
		c.hooksMu.Lock()
		c.onVerified = append(c.onVerified, fn)
		c.hooksMu.Unlock()
	}
}

// ErrNotIndexed: the path has no valid chunk index; read it whole.
var ErrNotIndexed = errNotIndexed

type (
	// LocalFile is a verified regular file in the local cache: a file of
	// its own (Base 0), or Size bytes at Base in a NAR blob.
	LocalFile = content.Span
	// ChunkedFile is an open regular file of an indexed path: reads fetch
	// and verify only the chunks they cover.
	ChunkedFile = content.Chunked
)

// OwnFileMin: a file this large is stored in a file of its own; it
// equals MaxRead (see tune.MaxRead for why).
const OwnFileMin = MaxRead

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
