package remote

import (
	"time"

	"github.com/narfs/narfs/remote/internal/content"
	"github.com/narfs/narfs/remote/internal/fetch"
	"github.com/narfs/narfs/remote/internal/trust"
	"github.com/narfs/narfs/remote/internal/upstream"
)

// newLocal opens the local disk shared by the caches of a Core opened
// with cfg (content-keyed state — downloads in flight, warm descriptors,
// open blobs, own-file checks — lives once per local disk, not once per
// cache).
func newLocal(cfg Config) (*content.Store, error) {
	return content.Open(content.Options{
		Dir:             cfg.CacheDir,
		Size:            cfg.CacheSize,
		IndexedWholeMax: cfg.IndexedWholeMax,
		Timeout:         cfg.Timeout,
		Deadline:        func(n int64) time.Duration { return fetch.Deadline(cfg.Timeout, cfg.Backend.MinRate, n) },
		Logger:          cfg.Logger,
	})
}

// counters counts content's events into a cache's counters
// (upstream.Counters' fields carry the names content's methods would).
type counters struct{ n *upstream.Counters }

func (s counters) Corrupt()           { s.n.Corrupt.Add(1) }
func (s counters) Fetched()           { s.n.Fetches.Add(1) }
func (s counters) ChunkBytes(n int64) { s.n.ChunkBytes.Add(n) }

// origin is this cache as the source of an indexed path's chunks.
func (c *cache) origin(p *PathInfo) content.Origin {
	return content.Origin{
		ID:       c.url.String(),
		Source:   c.be,
		Ranges:   &c.ranges,
		Counters: counters{c.up.Counters()},
		Record:   func() { c.up.RecordNarinfo(p.v) },
		Log:      c.log,
	}
}

// failedKey names this cache's download of p in the shared memo of
// failed downloads: a failure of one cache never answers for another.
func (c *cache) failedKey(p *PathInfo) string {
	return c.url.String() + "/" + trust.FlightKey(p.v)
}
