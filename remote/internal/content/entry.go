package content

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"syscall"

	"github.com/narfs/narfs/remote/internal/trust"
	"github.com/narfs/narfs/remote/internal/tune"
	"github.com/narfs/narfs/remote/localcache"
)

// Fetch is one cache's way to an entry.
type Fetch struct {
	Key string // the entry key (trust.EntryKey): what the content is
	// Failed names this cache's download of it (the cache's namespace and
	// trust.FlightKey): its failures are remembered under it, so that one
	// cache's bad narinfo or object never answers for another's.
	Failed   string
	What     string // the download, for errors
	Path     string // the store path, for logs
	Log      *slog.Logger
	Counters Counters
	// Run downloads, verifies and commits the entry from this cache and
	// returns it pinned (fetch.NAR and its glue).
	Run func() (*localcache.Entry, error)
}

// Entry returns the verified local cache entry f.Key, pinned, running
// f.Run first if it is not there. Concurrent callers for the same content
// share one download, whichever cache they reach it through; a caller
// giving up does not cancel it. A caller whose shared download was
// another cache's (or another path's) and failed tries once more with its
// own download, so that a bad object in one cache never fails a path
// another cache has right.
func (s *Store) Entry(ctx context.Context, f Fetch) (*localcache.Entry, error) {
	if e, err := s.cache.Acquire(f.Key); err == nil {
		return e, nil
	} else if !errors.Is(err, localcache.ErrMiss) {
		if errors.Is(err, localcache.ErrUnsafe) {
			f.Log.Error("local cache entry refused; not served", "path", f.Path, "err", err)
		}
		return nil, fmt.Errorf("%s: %w", f.Path, err)
	}
	if err := s.failed.Get(f.Failed); err != nil {
		return nil, err
	}
	e, owner, err := s.flights.do(ctx, f.Log, f.Key, f.Failed, f.What, func() (*localcache.Entry, error) { return s.run(f) })
	if err == nil || owner == f.Failed || ctx.Err() != nil {
		return e, err
	}
	// The download this caller waited for was another one's: its failure
	// says nothing of this cache. The retry has a flight of its own.
	if err := s.failed.Get(f.Failed); err != nil {
		return nil, err
	}
	e, _, err = s.flights.do(ctx, f.Log, f.Key+"\x00"+f.Failed, f.Failed, f.What, func() (*localcache.Entry, error) { return s.run(f) })
	return e, err
}

// run is a flight's work: the entry if it arrived meanwhile, else f.Run,
// whose failure is remembered for a while.
func (s *Store) run(f Fetch) (*localcache.Entry, error) {
	if e, err := s.cache.Acquire(f.Key); err == nil {
		return e, nil
	}
	if err := s.failed.Get(f.Failed); err != nil {
		return nil, err
	}
	e, err := f.Run()
	switch {
	case err == nil:
		f.Counters.Fetched()
	case errors.Is(err, trust.ErrCorrupt):
		f.Counters.Corrupt()
		s.failed.Add(f.Failed, err, tune.CorruptMemo, tune.CorruptMemo)
		f.Log.Error("NAR failed verification; not served", "path", f.Path, "err", err)
	case errors.Is(err, localcache.ErrLocal):
		s.failed.Add(f.Failed, err, tune.LocalMemoMin, tune.LocalMemoMax)
		if errors.Is(err, syscall.ENOSPC) {
			f.Log.Error("the local cache disk is full: NARs cannot be stored (free space or lower --cache-size)", "cache-dir", s.o.Dir, "path", f.Path, "err", err)
		} else {
			f.Log.Error("local cache failure", "cache-dir", s.o.Dir, "path", f.Path, "err", err)
		}
	default:
		f.Log.Warn("NAR fetch failed", "path", f.Path, "err", err)
	}
	return e, err
}
