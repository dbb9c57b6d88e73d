package remote

import (
	"sync"
	"time"
)

// negativeCache remembers failures by key until they expire: misses by
// hash part, like Nix's narinfo-cache-negative-ttl, and failed downloads.
// A key that fails again soon after its memo expired waits twice as long,
// up to the maximum its caller gives.
type negativeCache struct {
	ttl time.Duration    // for add; read-only after new
	now func() time.Time // tests move time

	mu      sync.Mutex // protects the fields below
	entries map[string]negativeEntry
	adds    int
}

type negativeEntry struct {
	until time.Time
	wait  time.Duration // the memo's length, doubled on a repeat failure
	err   error
}

func newNegativeCache(ttl time.Duration) *negativeCache {
	return &negativeCache{ttl: ttl, now: time.Now, entries: make(map[string]negativeEntry)}
}

func (c *negativeCache) get(key string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok || !c.now().Before(e.until) {
		return nil
	}
	return e.err
}

// addMiss remembers err for the cache's TTL.
func (c *negativeCache) addMiss(key string, err error) { c.add(key, err, c.ttl, c.ttl) }

// add remembers err for lo, or, when the key failed within the last
// memo's length after it expired, for twice the last memo, up to hi.
func (c *negativeCache) add(key string, err error, lo, hi time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	wait := lo
	if e, ok := c.entries[key]; ok && now.Before(e.until.Add(e.wait)) {
		wait = e.wait * 2
	}
	wait = min(max(lo, wait), hi)
	c.entries[key] = negativeEntry{until: now.Add(wait), wait: wait, err: err}
	// Sweep long-expired entries now and then so a scan of random names
	// cannot grow the map without bound.
	if c.adds++; c.adds%4096 == 0 {
		for k, e := range c.entries {
			if now.After(e.until.Add(e.wait)) {
				delete(c.entries, k)
			}
		}
	}
}
