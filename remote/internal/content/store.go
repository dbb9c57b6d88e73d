package content

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/narfs/narfs/remote/blob"
	"github.com/narfs/narfs/remote/internal/memo"
	"github.com/narfs/narfs/remote/internal/tune"
	"github.com/narfs/narfs/remote/localcache"
)

// Lock order (this file and blobs.go, chunked.go, warm.go): Chunked.mu →
// blobsMu → blob.Blob's mu → localcache.Cache's mu. blobsMu guards only the
// blobs map and refcounts: no file is created, renamed or read under it
// (OpenBlob creates a blob in opening.Do, outside it); the linger timer
// releases an entry under it. warmMu is never held across a localcache
// call. entryFlights.mu → localcache mu (Retain/Release under it).
// ownChecks.mu and Blob.raMu are leaves.

// Store is the local disk of a set of caches: one per local cache dir,
// shared by every upstream cache that reads through it. Safe for
// concurrent use.
type Store struct {
	cache *localcache.Cache
	o     Options
	log   *slog.Logger

	flights entryFlights // by entry key (content)
	failed  *memo.Memo   // a cache's download (Fetch.Failed) → why it failed

	own ownChecks // own files found (or written) matching their record

	warmMu sync.Mutex           // protects warm and every warmBlob's mutable fields
	warm   map[string]*warmBlob // entry key → open blob of a fetched stock path

	blobsMu sync.Mutex       // protects blobs and every Blob's refs and gen
	blobs   map[string]*Blob // chunked key → open blob of an indexed path
	opening singleflight.Group
	// publishSem bounds the copies of complete large files of indexed
	// paths into files of their own.
	publishSem chan struct{}
	publishing sync.WaitGroup // copies in progress; Close waits for them
	// background holds the decoding slots of indexed paths' background
	// fills (blob.Options.Background): all cores but one, at least one.
	background chan struct{}

	// bg ends when the Store closes: blobs' background fetches stop.
	bg   context.Context
	stop context.CancelFunc
}

// Options of a Store.
type Options struct {
	Dir  string // the local cache dir (localcache.Open); also named in logs
	Size int64  // its size cap
	// IndexedWholeMax: indexed paths stored in at most this many bytes are
	// fetched whole in the background once a file of theirs is read.
	IndexedWholeMax int64
	// Timeout bounds one read's wait for its chunks (Config.Timeout).
	Timeout time.Duration
	// Deadline bounds one request for n stored bytes of an indexed path.
	Deadline func(n int64) time.Duration
	Logger   *slog.Logger
}

// Counters are the counters of the cache a piece of content is read
// through (the resolving cache's): content counts into them and never
// sees the cache itself.
type Counters interface {
	Corrupt()           // an object or a local copy failed verification
	Fetched()           // a NAR was fetched and verified
	ChunkBytes(n int64) // stored bytes of chunk requests started
}

// Origin is where the chunks an opener of an indexed path misses come
// from: its cache's NAR objects. The source never chooses bytes (every
// chunk is checked against the signed index), so a blob shared by the
// openers of several caches may fetch from any of theirs.
type Origin struct {
	ID       string       // the cache (its URL): which openers share a source
	Source   blob.Source  // the cache's objects, counted as NAR requests
	Ranges   *blob.Ranges // what the cache does with range requests
	Counters Counters     // the cache's counters
	Record   func()       // called when the path's blob entry is first committed
	Log      *slog.Logger // the cache's logger
}

// Open opens the local cache in o.Dir.
func Open(o Options) (*Store, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Deadline == nil {
		o.Deadline = func(int64) time.Duration { return o.Timeout }
	}
	c, err := localcache.Open(o.Dir, o.Size, o.Logger)
	if err != nil {
		return nil, err
	}
	s := &Store{
		cache:      c,
		o:          o,
		log:        o.Logger,
		failed:     memo.New(tune.CorruptMemo),
		blobs:      map[string]*Blob{},
		warm:       map[string]*warmBlob{},
		publishSem: make(chan struct{}, 1),
		background: make(chan struct{}, max(1, runtime.GOMAXPROCS(0)-1)),
	}
	s.bg, s.stop = context.WithCancel(context.Background())
	return s, nil
}

// Cache is the local cache itself (entries and records).
func (s *Store) Cache() *localcache.Cache { return s.cache }

// Failed is the memo of failed downloads (tests move its clock).
func (s *Store) Failed() *memo.Memo { return s.failed }

// Usage is the bytes of extracted NARs in the local cache.
func (s *Store) Usage() int64 { return s.cache.Usage() }

// Counts are the local cache's hits, misses and evictions.
func (s *Store) Counts() (hits, misses, evictions int64) { return s.cache.Counts() }

// Stop ends background work: it waits for copies in progress and closes
// open blobs (their fetches end) and idle warm descriptors. Blobs opened
// after it fail. The caches the blobs read from close after it.
func (s *Store) Stop() {
	// Under blobsMu: publishOwn checks bg and registers its copy under it,
	// so no copy starts after the Wait below.
	s.blobsMu.Lock()
	s.stop()
	s.blobsMu.Unlock()
	s.publishing.Wait()
	s.blobsMu.Lock()
	for k, r := range s.blobs {
		r.b.Close()
		r.e.Release()
		delete(s.blobs, k)
	}
	s.blobsMu.Unlock()
	s.closeWarm()
}

// Close stops (Stop) and closes the local cache.
func (s *Store) Close() error {
	s.Stop()
	return s.cache.Close()
}

// errClosed: the Store is closing.
var errClosed = errors.New("local cache closing")
