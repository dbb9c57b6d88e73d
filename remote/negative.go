package remote

import (
	"sync"
	"time"
)

// negativeCache remembers misses by hash part until they expire, like Nix's
// narinfo-cache-negative-ttl.
type negativeCache struct {
	ttl time.Duration
	now func() time.Time // tests move time

	mu      sync.Mutex // protects the fields below
	entries map[string]negativeEntry
	adds    int
}

type negativeEntry struct {
	until time.Time
	err   error
}

func newNegativeCache(ttl time.Duration) *negativeCache {
	return &negativeCache{ttl: ttl, now: time.Now, entries: make(map[string]negativeEntry)}
}

func (c *negativeCache) get(key string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok {
		return nil
	}
	if c.now().After(e.until) {
		delete(c.entries, key)
		return nil
	}
	return e.err
}

func (c *negativeCache) add(key string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	c.entries[key] = negativeEntry{until: now.Add(c.ttl), err: err}
	// Sweep expired entries now and then so a scan of random names cannot
	// grow the map without bound.
	if c.adds++; c.adds%4096 == 0 {
		for k, e := range c.entries {
			if now.After(e.until) {
				delete(c.entries, k)
			}
		}
	}
}
