package remote

import (
	"log/slog"
	"runtime"
	"sync"

	"github.com/narfs/narfs/remote/internal/memo"
	"github.com/narfs/narfs/remote/internal/tune"
	"github.com/narfs/narfs/remote/localcache"
)

// contentPart is a Store's local disk: the local cache and what is kept
// of its entries (downloads in flight, failure memos, warm descriptors,
// open blobs of indexed paths, own-file checks).
type contentPart struct {
	cache *localcache.Cache
	// ownsCache: the local cache is this store's alone, not shared by
	// Substituters, and closed with it.
	ownsCache bool

	fetches entryFlights // by flightKey
	failed  *memo.Memo   // flightKey (and "index/" + hash part) → why its download failed

	ownChecked ownChecks // own files of entries found matching their recorded hash

	warmMu sync.Mutex           // protects warm and every warmBlob's mutable fields
	warm   map[string]*warmBlob // entry key → open blob of a fetched stock path

	blobsMu sync.Mutex          // protects blobs
	blobs   map[string]*blobRef // chunked key → open blob of an indexed path
	// publishSem bounds the copies of complete large files of indexed
	// paths into files of their own.
	publishSem chan struct{}
	publishing sync.WaitGroup // copies in progress; Close waits for them
	// background holds the decoding slots of indexed paths' background
	// fills (blob.Options.Background): all cores but one, at least one.
	background chan struct{}
}

// newContentPart uses local, the local cache of a Substituters, or opens
// one of its own when local is nil.
func newContentPart(cfg Config, log *slog.Logger, local *localcache.Cache) (*contentPart, error) {
	c := &contentPart{
		cache:      local,
		ownsCache:  local == nil,
		failed:     memo.New(tune.CorruptMemo),
		blobs:      map[string]*blobRef{},
		warm:       map[string]*warmBlob{},
		publishSem: make(chan struct{}, 1),
		background: make(chan struct{}, max(1, runtime.GOMAXPROCS(0)-1)),
	}
	if c.ownsCache {
		var err error
		if c.cache, err = localcache.Open(cfg.CacheDir, cfg.CacheSize, log); err != nil {
			return nil, err
		}
	}
	return c, nil
}
