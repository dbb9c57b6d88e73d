package upstream

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/narfs/narfs/remote/backend"
	"github.com/narfs/narfs/remote/chunkindex"
	"github.com/narfs/narfs/remote/internal/tune"
	"github.com/narfs/narfs/remote/stats"
)

// indexAliases fetches a path's chunk index under its hash-part name
// (chunkindex.AliasKey) in parallel with its narinfo, for caches that keep
// such copies: a lookup then costs one round trip instead of two. What
// arrives is only a candidate; fetchIndex checks it exactly like the
// object the narinfo names, and falls back to that object when it fails.
type indexAliases struct {
	// on: the cache keeps aliases (its nix-cache-info says so, or one of
	// its narinfos named an index). Only decides whether to ask.
	on atomic.Bool
	// slowUntil (Unix ns): an alias outwaited its lookup; none is asked
	// for until then, so a cache hanging on alias keys costs one short
	// wait a minute, not one a lookup.
	slowUntil atomic.Int64

	mu      sync.Mutex             // protects pending; a leaf
	pending map[string]*aliasFetch // hash part → fetch
	wg      sync.WaitGroup         // fetches in flight; Close waits
}

type aliasFetch struct {
	start time.Time
	done  chan struct{}
	obj   []byte // set before done closes
	err   error
}

// startIndexAlias begins fetching the alias of hash, unless aliases are
// off, one is already pending, the bound is reached or the cache closes.
func (c *Cache) startIndexAlias(hash string) {
	a := &c.aliases
	if !a.on.Load() || time.Now().UnixNano() < a.slowUntil.Load() {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if c.bg.Err() != nil || a.pending[hash] != nil || len(a.pending) >= tune.AliasMaxPending {
		return
	}
	if a.pending == nil {
		a.pending = map[string]*aliasFetch{}
	}
	f := &aliasFetch{start: time.Now(), done: make(chan struct{})}
	a.pending[hash] = f
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		ctx, cancel := c.FlightContext(c.bg)
		f.obj, f.err = backend.ReadAll(ctx, c.counted.For(stats.KindIndex), chunkindex.AliasKey(hash), tune.AliasMaxObject)
		cancel()
		close(f.done)
		time.AfterFunc(tune.AliasKeep, func() { a.drop(hash, f) })
	}()
}

func (a *indexAliases) drop(hash string, f *aliasFetch) {
	a.mu.Lock()
	if a.pending[hash] == f {
		delete(a.pending, hash)
	}
	a.mu.Unlock()
}

// errAliasSlow: an alias fetch outwaited its lookup.
var errAliasSlow = errors.New("index alias not there in time")

// takeIndexAlias returns the alias object fetched for hash, waiting for a
// fetch in flight: until ctx ends when it is the path's only index
// (only, layout 2), else a while (then the narinfo's is fetched). asked
// is false when none was started; err says why there is no object.
func (c *Cache) takeIndexAlias(ctx context.Context, hash string, only bool) (obj []byte, err error, asked bool) {
	a := &c.aliases
	a.mu.Lock()
	f := a.pending[hash]
	delete(a.pending, hash)
	a.mu.Unlock()
	if f == nil {
		return nil, nil, false
	}
	var wait <-chan time.Time
	if !only {
		t := time.NewTimer(min(max(time.Since(f.start), tune.AliasWaitMin), tune.AliasWaitMax))
		defer t.Stop()
		wait = t.C
	}
	select {
	case <-f.done:
	case <-ctx.Done():
		if only {
			return nil, fmt.Errorf("%w (waited %v): %w", errAliasSlow, time.Since(f.start).Round(time.Millisecond), ctx.Err()), true
		}
		return nil, ctx.Err(), true
	case <-wait:
		// It goes on to its own deadline; what it brings is dropped.
		a.slowUntil.Store(time.Now().Add(tune.AliasSlowPause).UnixNano())
		c.log.Warn("index alias slow; using the narinfo's index, and asking for no alias for a minute", "hash", hash, "waited", time.Since(f.start))
		return nil, errAliasSlow, true
	}
	if f.err != nil {
		c.log.Debug("index alias not fetched", "hash", hash, "err", f.err)
		return nil, f.err, true
	}
	return f.obj, nil, true
}
