package remote

import (
	"context"
	"log/slog"

	"github.com/narfs/narfs/remote/backend"
	"github.com/narfs/narfs/remote/blob"
	"github.com/narfs/narfs/remote/internal/upstream"
	"github.com/narfs/narfs/remote/localcache"
)

// upstreamPart is a Store's binary cache: up (remote/internal/upstream)
// holds its backend and what is known of it (trust, narinfos, chunk
// indexes, ranges, liveness, counters). The other fields are views of
// up under the names the rest of the Store uses.
type upstreamPart struct {
	up *upstream.Cache

	url      *backend.StoreURL
	be       backend.Backend // up's, counting requests as NAR GETs: blob chunks
	storeDir string
	priority int // lower is asked first (nix-cache-info, ?priority=)
	// ranges is what the cache does with range requests, as its NAR
	// downloads and blobs (indexed paths) learnt it: one that ignores
	// them is streamed. up holds a pointer to it.
	ranges blob.Ranges
}

// newUpstreamPart opens the cache u (reading its nix-cache-info);
// records is the local cache keeping narinfos and indexes of fetched
// paths; bg ending stops the cache's background work. The caller
// closes up.
func newUpstreamPart(ctx, bg context.Context, u *backend.StoreURL, cfg Config, log *slog.Logger, records *localcache.Cache) (*upstreamPart, error) {
	part := &upstreamPart{url: u}
	up, err := upstream.Open(ctx, u, upstream.Options{
		Keys:              cfg.TrustedKeys,
		RequireSigs:       cfg.RequireSigs,
		ProgressDeadlines: cfg.ProgressDeadlines,
		Timeout:           cfg.Timeout,
		NegativeTTL:       cfg.NegativeTTL,
		NarinfoTTL:        cfg.NarinfoTTL,
		NarinfoCacheSize:  cfg.NarinfoCacheSize,
		ListingMemory:     cfg.ListingMemory,
		Backend:           cfg.Backend,
		Parallel:          cfg.Parallel,
		SingleStream:      cfg.SingleStream,
		Observer:          cfg.OnRequest,
		Logger:            log,
		Background:        bg,
		Ranges:            &part.ranges,
	}, records)
	if err != nil {
		return nil, err
	}
	part.up = up
	part.be = up.Chunks()
	part.storeDir = up.StoreDir()
	part.priority = up.Priority()
	return part, nil
}
