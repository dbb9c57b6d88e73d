package remote

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/narfs/narfs/remote/internal/fetch"
	"github.com/narfs/narfs/remote/internal/memo"
	"github.com/narfs/narfs/remote/internal/tune"
	"github.com/narfs/narfs/remote/internal/workq"
	"github.com/narfs/narfs/remote/storepath"
)

// ahead is a cache's background work, stopped when it closes: lookq
// looks up references' narinfos and listings ahead of readers,
// prefetchq fetches their data (Config.PrefetchReferences). core is the
// Core the cache is one of: a lookahead starts at its first cache and
// passes down the order, a prefetch resolves as a reader would.
type ahead struct {
	core      *Core
	c         *cache
	lookq     *workq.Queue
	prefetchq *workq.Queue
	paused    *memo.Memo // "" → why lookahead pauses
}

// newAhead's queues stop when c.bg ends.
func newAhead(g *Core, c *cache) *ahead {
	return &ahead{
		core: g,
		c:    c,
		// The lookahead's product is a narinfo in the narinfo LRU: it
		// remembers no more references than that LRU holds narinfos, so
		// that metadata queries of ever more paths (a daemon socket's
		// clients) cost no memory beyond the LRU's bound. Prefetches fetch
		// data: their queue remembers more, so a path's data is tried once.
		lookq:     workq.New(c.bg, tune.LookaheadJobs, c.cfg.NarinfoCacheSize, c.log, "lookahead"),
		prefetchq: workq.New(c.bg, c.cfg.PrefetchJobs, 0, c.log, "prefetch"),
		paused:    memo.New(tune.LookaheadPauseMin),
	}
}

// wait waits for the queues' jobs, once c.bg has ended.
func (a *ahead) wait() {
	a.lookq.Wait()
	a.prefetchq.Wait()
}

// lookahead queues background lookups of p's references: their narinfos
// and listings (a .ls or a chunk index; never a NAR), and, as each
// resolves, of its own references, so that a walk of a closure finds every
// narinfo in memory instead of paying one round trip per path. Each hash
// is looked up at most once per cache; failures are only logged at debug
// level and misses land in the negative cache like any lookup's.
func (a *ahead) lookahead(p *PathInfo) {
	if a.c.cfg.NoReferenceLookahead {
		return
	}
	// Of several caches, the first is asked first, as a reader's lookup
	// would; a miss passes the reference down the order.
	q := a.core.caches[0].ahead
	for _, ref := range p.NarInfo.References {
		if ref == p.Path {
			continue
		}
		q.lookq.Add(ref.Hash, func(ctx context.Context) { q.lookAt(ctx, ref) })
	}
}

// expect queues a background lookup of p's own listing (and, as any
// resolution does, of its references'), in the cache that has p.
func (a *ahead) expect(p *PathInfo) {
	if a.c.cfg.NoReferenceLookahead {
		return
	}
	a.lookq.Add(p.Path.Hash, func(ctx context.Context) { a.lookAt(ctx, p.Path) })
}

// lookNext passes a reference's lookahead to the next cache.
func (a *ahead) lookNext(ref storepath.StorePath) {
	caches := a.core.caches
	i := slices.Index(caches, a.c)
	if i < 0 || i+1 >= len(caches) {
		return
	}
	n := caches[i+1].ahead
	n.lookq.Add(ref.Hash, func(ctx context.Context) { n.lookAt(ctx, ref) })
}

// lookAt is one lookahead job.
func (a *ahead) lookAt(ctx context.Context, ref storepath.StorePath) {
	c := a.c
	if err := a.paused.Get(""); err != nil {
		// Skipped, not done: a later resolution may queue it again.
		a.lookq.Forget(ref.Hash)
		return
	}
	if c.up.Skipping() != nil {
		a.lookq.Forget(ref.Hash)
		a.lookNext(ref)
		return
	}
	// Wait for the shared lookups to end rather than for ctx: Close
	// cancels them, and waits for this job, so nothing is asked of the
	// cache once it returned.
	ctx = context.WithoutCancel(ctx)
	pi, err := c.info(ctx, ref.Hash)
	if err == nil && pi.Path != ref {
		err = fmt.Errorf("%s: %w", ref, ErrNotFound) // Resolve would refuse it
	}
	if isAnswer(err) {
		a.lookNext(ref)
	}
	if err == nil {
		a.lookahead(pi)
		if _, err = c.listing(ctx, pi, false); errors.Is(err, errNeedNAR) {
			err = nil
		}
	}
	a.lookaheadDone(ref, err)
}

// lookaheadDone judges a lookahead's outcome: answers of the cache (a
// miss, an untrusted or corrupt narinfo) are its negative cache's
// business; anything else pauses the lookahead.
func (a *ahead) lookaheadDone(ref storepath.StorePath, err error) {
	switch {
	case err == nil, a.c.bg.Err() != nil:
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrUntrusted), errors.Is(err, ErrCorrupt):
		a.c.log.Debug("lookahead: reference not usable", "path", ref.String(), "err", err)
	default:
		a.paused.Add("", err, tune.LookaheadPauseMin, tune.LookaheadPauseMax)
		a.c.log.Debug("lookahead failed; pausing it", "path", ref.String(), "err", err)
	}
}

// prefetchReferences queues background fetches of p's references' data
// (and so, transitively, of its closure) when Config.PrefetchReferences is
// set; at most PrefetchJobs run at once. Each path is tried at most once
// per cache; failures are only logged: a reader that needs the path later
// gets the error itself.
func (a *ahead) prefetchReferences(p *PathInfo) {
	if !a.c.cfg.PrefetchReferences {
		return
	}
	for _, ref := range p.NarInfo.References {
		if ref == p.Path {
			continue
		}
		a.prefetchq.Add(ref.Hash, func(ctx context.Context) {
			// Of several caches, the one a reader would get.
			info, err := a.core.Resolve(ctx, ref.String())
			if err == nil {
				var indexed bool
				if indexed, err = a.core.Prefetch(ctx, info); err == nil && indexed {
					// Whole NARs queue their references as their fetch starts;
					// indexed paths do it here.
					info.src.ahead.prefetchReferences(info)
				}
			}
			if err != nil && !errors.Is(err, ErrNotFound) && a.c.bg.Err() == nil {
				a.c.log.Debug("prefetch failed", "path", ref.String(), "err", err)
			}
		})
	}
}

// Prefetch makes sure a store path's data is in the local cache, verified,
// so that later reads (by this process or another sharing the cache dir)
// ask the cache for nothing but, at most, its narinfo: an indexed path's
// blob gets every chunk (prefetchIndexed), any other path its NAR. It
// reports whether the path is indexed.
func (g *Core) Prefetch(ctx context.Context, p *PathInfo) (indexed bool, err error) {
	c := g.of(p)
	err = c.prefetchIndexed(ctx, p)
	if !errors.Is(err, errNotIndexed) {
		return true, err
	}
	// The NAR, waiting as long as the download may take, not just
	// Config.Timeout: a prefetch has no reader to answer.
	if d := fetch.Deadline(c.cfg.Timeout, c.cfg.Backend.MinRate, p.NarInfo.NarSize); d < math.MaxInt64-c.cfg.Timeout {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d+c.cfg.Timeout)
		defer cancel()
	}
	e, err := c.entry(ctx, p)
	if err != nil {
		return false, err
	}
	e.Release()
	return false, nil
}
