package remote

import (
	"time"

	"github.com/narfs/narfs/remote/internal/content"
	"github.com/narfs/narfs/remote/internal/memo"
	"github.com/narfs/narfs/remote/internal/trust"
	"github.com/narfs/narfs/remote/internal/tune"
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
	// failed: "index/" + hash part → why the cache's index failed (a
	// memo per cache; upstream's once it moves there).
	failed *memo.Memo
}

// newLocal opens the local disk of one or several caches opened with cfg.
func newLocal(cfg Config) (*content.Store, error) {
	// fetchDeadline reads only cfg; it moves to package fetch.
	deadline := (&Store{cfg: cfg}).fetchDeadline
	return content.Open(content.Options{
		Dir:             cfg.CacheDir,
		Size:            cfg.CacheSize,
		IndexedWholeMax: cfg.IndexedWholeMax,
		Timeout:         cfg.Timeout,
		Deadline:        func(n int64) time.Duration { return deadline(n) },
		Logger:          cfg.Logger,
	})
}

// newContentPart uses local, the local disk of a Substituters, or opens
// one of its own when local is nil.
func newContentPart(cfg Config, local *content.Store) (*contentPart, error) {
	c := &contentPart{local: local, ownsLocal: local == nil, failed: memo.New(tune.CorruptMemo)}
	if c.ownsLocal {
		var err error
		if c.local, err = newLocal(cfg); err != nil {
			return nil, err
		}
	}
	c.cache = c.local.Cache()
	return c, nil
}

// storeCounters counts content's events into a Store's counters.
type storeCounters struct{ c *counters }

func (s storeCounters) Corrupt()           { s.c.corrupt.Add(1) }
func (s storeCounters) Fetched()           { s.c.fetches.Add(1) }
func (s storeCounters) ChunkBytes(n int64) { s.c.chunkBytes.Add(n) }

// origin is this cache as the source of an indexed path's chunks.
func (s *Store) origin(p *PathInfo) content.Origin {
	return content.Origin{
		ID:       s.url.String(),
		Source:   s.be,
		Ranges:   &s.ranges,
		Counters: storeCounters{&s.stats},
		Record:   func() { s.recordNarinfo(p) },
		Log:      s.log,
	}
}

// failedKey names this cache's download of p in the shared memo of
// failed downloads: a failure of one cache never answers for another.
func (s *Store) failedKey(p *PathInfo) string {
	return s.recordNS + "/" + trust.FlightKey(p.v)
}
