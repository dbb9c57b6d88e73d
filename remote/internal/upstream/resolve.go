package upstream

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/narfs/narfs/remote/backend"
	"github.com/narfs/narfs/remote/chunkindex"
	"github.com/narfs/narfs/remote/internal/flight"
	"github.com/narfs/narfs/remote/internal/trust"
	"github.com/narfs/narfs/remote/internal/tune"
	"github.com/narfs/narfs/remote/narinfo"
	"github.com/narfs/narfs/remote/stats"
)

// Info returns the trusted path of a hash part with its verdict, from
// memory, the local cache's record of it, or the cache. The verdict is
// kept, not recomputed: it costs a signature check. Misses, untrusted and
// corrupt narinfos are remembered for NegativeTTL; concurrent callers
// share one request. The result is shared: callers must not modify it.
func (c *Cache) Info(ctx context.Context, hash string) (*trust.Path, error) {
	if tp, ok := c.narinfos.Get(hash); ok {
		c.counters.lookup(nil, false)
		return tp, nil
	}
	if err := c.negative.Get(hash); err != nil {
		c.counters.lookup(err, true)
		return nil, err
	}
	ctx, cancel := c.OpContext(ctx)
	defer cancel()
	// The fetch is shared, so one caller giving up must not fail the others.
	v, err := flight.Shared(ctx, c.log, &c.resolve, hash, fmt.Sprintf("%s: narinfo %s", c.url, hash), func() (any, error) {
		// A flight that ended between the checks above and Do has already
		// filled one of the caches.
		if tp, ok := c.narinfos.Get(hash); ok {
			return tp, nil
		}
		if err := c.negative.Get(hash); err != nil {
			return nil, err
		}
		ctx, cancel := c.FlightContext(ctx)
		defer cancel()
		tp, err := c.lookupNarinfo(ctx, hash)
		if err != nil {
			if errors.Is(err, backend.ErrNotFound) || errors.Is(err, narinfo.ErrUntrusted) || errors.Is(err, trust.ErrCorrupt) {
				c.negative.AddMiss(hash, err)
				c.log.Debug("narinfo rejected", "hash", hash, "err", err)
			}
			return nil, err
		}
		c.narinfos.Add(hash, tp)
		return tp, nil
	})
	c.counters.lookup(err, false)
	if err != nil {
		return nil, err
	}
	return v.(*trust.Path), nil
}

// lookupNarinfo reads a narinfo from the local record (kept for paths
// whose NAR was fetched) when it is younger than NarinfoTTL, else from the
// cache; when the cache cannot be reached, an older record still answers,
// so paths already fetched keep working offline.
func (c *Cache) lookupNarinfo(ctx context.Context, hash string) (*trust.Path, error) {
	rec, written, recErr := c.records.GetRecord(c.recordNS, hash+".narinfo")
	if recErr == nil && time.Since(written) < c.o.NarinfoTTL {
		if tp, err := c.parseNarinfo(hash, rec); err == nil {
			return tp, nil
		}
	}
	c.startIndexAlias(hash)
	data, err := backend.ReadAll(ctx, c.counted.For(stats.KindNarinfo), hash+".narinfo", tune.MaxSmallObject)
	if err != nil {
		err = fmt.Errorf("narinfo %s: %w", hash, err)
		if recErr == nil && !errors.Is(err, backend.ErrNotFound) {
			if tp, perr := c.parseNarinfo(hash, rec); perr == nil {
				c.log.Warn("cache unreachable; using the narinfo recorded locally", "path", tp.StorePath.String(), "recorded", written.UTC().Format(time.RFC3339), "err", err)
				return tp, nil
			}
		}
		return nil, err
	}
	tp, err := c.parseNarinfo(hash, data)
	if err == nil && c.o.RecordAll {
		c.RecordNarinfo(tp)
		// And its chunk index, if the cache keeps one: its alias was
		// fetched with the narinfo, and an index that verifies is
		// recorded (RecordIndex), where a mount finds it.
		c.Index(ctx, tp)
	}
	return tp, err
}

// RecordNarinfo keeps a path's narinfo beside its verified NAR, for
// restarts without the cache. Only paths whose NAR was fetched are
// recorded: a walk of a whole bucket's root must not write a file per
// path.
func (c *Cache) RecordNarinfo(p *trust.Path) {
	if err := c.records.PutRecord(c.recordNS, p.StorePath.Hash+".narinfo", p.NarInfo.Marshal()); err != nil {
		c.log.Warn("recording narinfo locally", "path", p.StorePath.String(), "err", err)
	}
}

// parseNarinfo parses and judges a narinfo for hash.
func (c *Cache) parseNarinfo(hash string, data []byte) (*trust.Path, error) {
	ni, err := narinfo.Parse(data)
	if err != nil {
		c.log.Warn("malformed narinfo", "hash", hash, "err", err)
		return nil, fmt.Errorf("narinfo %s: %w: %v", hash, trust.ErrCorrupt, err)
	}
	if ni.StorePath.Hash != hash {
		return nil, fmt.Errorf("narinfo %s: %w: it describes %s", hash, trust.ErrCorrupt, ni.StorePath)
	}
	if ni.StoreDir != c.storeDir {
		return nil, fmt.Errorf("narinfo %s: %w: store path %s is not under %s", hash, backend.ErrNotFound, ni.StorePath.Abs(ni.StoreDir), c.storeDir)
	}
	tp, err := trust.Judge(ni, c.o.Keys, c.trustAll)
	if err != nil {
		c.log.Info("untrusted path hidden", "path", ni.StorePath.String(), "err", err)
		return nil, fmt.Errorf("narinfo %s: %w", hash, err)
	}
	if _, ok := ni.Get(chunkindex.KeyURL); ok {
		// A cache that indexes one path likely indexes the next: ask for
		// their indexes together with their narinfos from now on.
		c.aliases.on.Store(true)
	}
	return tp, nil
}

// Cached is what memory holds of hash, without asking anything: its
// trusted verdict, or the rejection remembered for NegativeTTL, or
// neither (nil, nil).
func (c *Cache) Cached(hash string) (*trust.Path, error) {
	if tp, ok := c.narinfos.Peek(hash); ok {
		return tp, nil
	}
	return nil, c.negative.Get(hash)
}
