// Package memo remembers failures by key for a while (negative caching):
// narinfo misses, failed downloads and index fetches, with a back-off for
// keys that fail again soon after their memo expired.
package memo

import (
	"sync"
	"time"
)

// Memo remembers failures by key until they expire: misses by
// hash part, like Nix's narinfo-cache-negative-ttl, and failed downloads.
// A key that fails again soon after its memo expired waits twice as long,
// up to the maximum its caller gives.
type Memo struct {
	ttl time.Duration    // for add; read-only after new
	Now func() time.Time // tests move time

	mu      sync.Mutex // protects the fields below
	entries map[string]entry
	adds    int
}

type entry struct {
	until time.Time
	wait  time.Duration // the memo's length, doubled on a repeat failure
	err   error
}

func New(ttl time.Duration) *Memo {
	return &Memo{ttl: ttl, Now: time.Now, entries: make(map[string]entry)}
}

func (c *Memo) Get(key string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok || !c.Now().Before(e.until) {
		return nil
	}
	return e.err
}

// AddMiss remembers err for the cache's TTL.
func (c *Memo) AddMiss(key string, err error) { c.Add(key, err, c.ttl, c.ttl) }

// Add remembers err for lo, or, when the key failed within the last
// memo's length after it expired, for twice the last memo, up to hi.
func (c *Memo) Add(key string, err error, lo, hi time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.Now()
	wait := lo
	if e, ok := c.entries[key]; ok && now.Before(e.until.Add(e.wait)) {
		wait = e.wait * 2
	}
	wait = min(max(lo, wait), hi)
	c.entries[key] = entry{until: now.Add(wait), wait: wait, err: err}
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
