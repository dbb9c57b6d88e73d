package content

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/narfs/narfs/remote/internal/flight"
	"github.com/narfs/narfs/remote/localcache"
)

// entryFlights shares one download among the callers that want the same
// entry, and hands each of them its own pin on the result: an entry is
// never unpinned between its commit and its waiters' opens, so not even an
// entry larger than the whole cache can be evicted before they use it.
type entryFlights struct {
	mu sync.Mutex // protects m and every flight's waiters
	m  map[string]*entryFlight
}

type entryFlight struct {
	owner   string        // the Fetch.Failed of the caller that started it
	done    chan struct{} // closed when e and err are set
	waiters int           // callers still waiting; each is owed one pin
	e       *localcache.Entry
	err     error
}

// do runs fn once per key for all concurrent callers. fn returns a pinned
// entry; every caller that receives it owns one pin and must Release it. A
// caller whose context ends returns at once; the work goes on. owner is
// the result's: the owner of the flight that ran (the first caller's).
func (g *entryFlights) do(ctx context.Context, log *slog.Logger, key, owner, what string, fn func() (*localcache.Entry, error)) (*localcache.Entry, string, error) {
	g.mu.Lock()
	if g.m == nil {
		g.m = make(map[string]*entryFlight)
	}
	f := g.m[key]
	if f == nil {
		f = &entryFlight{owner: owner, done: make(chan struct{})}
		g.m[key] = f
		go g.run(log, key, f, fn)
	}
	f.waiters++
	g.mu.Unlock()

	select {
	case <-f.done:
		return f.e, f.owner, f.err
	case <-ctx.Done():
	}
	g.mu.Lock()
	select {
	case <-f.done:
		// Finished just now: a pin was handed to us; give it back.
		g.mu.Unlock()
		if f.e != nil {
			f.e.Release()
		}
	default:
		f.waiters--
		g.mu.Unlock()
	}
	return nil, owner, fmt.Errorf("%s: %w", what, context.Cause(ctx))
}

func (g *entryFlights) run(log *slog.Logger, key string, f *entryFlight, fn func() (*localcache.Entry, error)) {
	var (
		e   *localcache.Entry
		err error
	)
	func() {
		defer flight.RecoverBug(log, "fetch "+key, &err)
		e, err = fn()
	}()
	if err != nil && e != nil {
		e.Release()
		e = nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.m, key)
	f.e, f.err = e, err
	if e != nil {
		// fn's pin goes to the first waiter; the others get one each.
		if f.waiters == 0 {
			e.Release()
		}
		for i := 1; i < f.waiters; i++ {
			e.Retain()
		}
	}
	close(f.done)
}
