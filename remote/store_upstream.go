package remote

import (
	"context"
	"sync/atomic"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/semaphore"
	"golang.org/x/sync/singleflight"

	"github.com/narfs/narfs/remote/backend"
	"github.com/narfs/narfs/remote/blob"
	"github.com/narfs/narfs/remote/internal/memo"
	"github.com/narfs/narfs/remote/internal/tune"
	"github.com/narfs/narfs/remote/storepath"
)

// upstreamPart is a Store's binary cache: its backend and what is known
// of it (trust, narinfos, chunk indexes, ranges, liveness, counters).
type upstreamPart struct {
	// read-only after newUpstreamPart
	url      *backend.StoreURL
	be       backend.Backend // counting (countingBackend)
	storeDir string
	trustAll bool   // require-sigs=false or the URL's trusted=true
	recordNS string // namespace of this cache's narinfos in the local cache
	priority int    // lower is asked first (nix-cache-info, ?priority=); set by Open

	down downState // skipping the cache after a failure (Substituters)

	stats counters
	// noRanges is set once the cache failed to answer a ranged request
	// exactly: NARs are then read with one GET.
	noRanges atomic.Bool
	// ranges is what the cache does with range requests, as its blobs
	// (indexed paths) learnt it: one that ignores them is streamed.
	ranges blob.Ranges

	resolveGroup singleflight.Group // by hash part

	narinfos *lru.Cache[string, *PathInfo] // hash part → trusted narinfo and verdict
	decoding *semaphore.Weighted           // memory of .ls and index decodes in progress
	negative *memo.Memo                    // hash part → why it is not visible
	// verifiedIndexes: hash parts whose chunk index verified (recently;
	// IndexVerified also asks the local records).
	verifiedIndexes *lru.Cache[string, struct{}]
	aliases         indexAliases // chunk indexes fetched with their narinfos
}

// newUpstreamPart opens the backend of u; the caller closes be.
func newUpstreamPart(ctx context.Context, u *backend.StoreURL, cfg Config) (*upstreamPart, error) {
	be, err := backend.Open(ctx, u, cfg.Backend)
	if err != nil {
		return nil, err
	}
	up := &upstreamPart{
		url:      u,
		storeDir: storepath.DefaultStoreDir,
		trustAll: !cfg.RequireSigs || u.Params.Get("trusted") == "true" || u.Params.Get("trusted") == "1",
		negative: memo.New(cfg.NegativeTTL),
		decoding: semaphore.NewWeighted(cfg.ListingMemory),
		recordNS: recordNamespace(u.String()),
	}
	up.stats.observer = cfg.OnRequest
	up.stats.cache = u.String()
	if cfg.ProgressDeadlines {
		be = backend.ProgressDeadlines(be, cfg.Timeout, cfg.Backend.MinRate)
	}
	up.be = countingBackend{Backend: be, c: &up.stats}
	if up.narinfos, err = lru.New[string, *PathInfo](cfg.NarinfoCacheSize); err != nil {
		be.Close()
		return nil, err
	}
	if up.verifiedIndexes, err = lru.New[string, struct{}](max(cfg.NarinfoCacheSize, tune.VerifiedIndexesMin)); err != nil {
		be.Close()
		return nil, err
	}
	return up, nil
}
