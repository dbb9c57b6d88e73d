package remote

import (
	"time"

	"github.com/narfs/narfs/remote/internal/content"
	"github.com/narfs/narfs/remote/internal/fetch"
	"github.com/narfs/narfs/remote/internal/trust"
	"github.com/narfs/narfs/remote/internal/upstream"
	"github.com/narfs/narfs/remote/localcache"
)

// contentPart is a Store's view of the local disk: local, shared by every
// cache of a Substituters (content-keyed state — downloads in flight,
// warm descriptors, open blobs, own-file checks — lives once per local
// cache, not once per cache).
type contentPart struct {
	local *content.Store
	// ownsLocal: local is this store's alone (Open), closed with it.
	ownsLocal bool
	// cache is local's cache, for the records of narinfos and indexes.
	cache *localcache.Cache
}

// newLocal opens the local disk of one or several caches opened with cfg.
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

// newContentPart uses local, the local disk of a Substituters, or opens
// one of its own when local is nil.
func newContentPart(cfg Config, local *content.Store) (*contentPart, error) {
	c := &contentPart{local: local, ownsLocal: local == nil}
	if c.ownsLocal {
		var err error
		if c.local, err = newLocal(cfg); err != nil {
			return nil, err
		}
	}
	c.cache = c.local.Cache()
	return c, nil
}

// storeCounters counts content's events into a cache's counters
// (upstream.Counters' fields carry the names content's methods would).
type storeCounters struct{ c *upstream.Counters }

func (s storeCounters) Corrupt()           { s.c.Corrupt.Add(1) }
func (s storeCounters) Fetched()           { s.c.Fetches.Add(1) }
func (s storeCounters) ChunkBytes(n int64) { s.c.ChunkBytes.Add(n) }

// origin is this cache as the source of an indexed path's chunks.
func (s *Store) origin(p *PathInfo) content.Origin {
	return content.Origin{
		ID:       s.url.String(),
		Source:   s.be,
		Ranges:   &s.ranges,
		Counters: storeCounters{s.up.Counters()},
		Record:   func() { s.recordNarinfo(p) },
		Log:      s.log,
	}
}

// failedKey names this cache's download of p in the shared memo of
// failed downloads: a failure of one cache never answers for another.
func (s *Store) failedKey(p *PathInfo) string {
	return s.url.String() + "/" + trust.FlightKey(p.v)
}
