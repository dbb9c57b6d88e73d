package upstream

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/narfs/narfs/remote/backend"
	"github.com/narfs/narfs/remote/internal/trust"
	"github.com/narfs/narfs/remote/internal/tune"
)

// ErrSkipped: the cache failed recently and is not asked until
// tune.DownFor has passed.
var ErrSkipped = errors.New("cache skipped after a failure")

// downState remembers that the cache failed a lookup.
type downState struct {
	mu    sync.Mutex // protects the fields below; a leaf
	until time.Time  // skipped until then
	err   error      // why
	was   bool       // down since the last answer; logged once
}

// Skipping is non-nil (wrapping ErrSkipped) while the cache is skipped
// after a failure.
func (c *Cache) Skipping() error {
	d := &c.down
	d.mu.Lock()
	defer d.mu.Unlock()
	if time.Now().Before(d.until) {
		return fmt.Errorf("%s: %w (%v)", c.url, ErrSkipped, d.err)
	}
	return nil
}

// MarkDown skips the cache for tune.DownFor after err, logging the first
// failure of a streak only: a cache that stays down is tried once a
// minute, and says so once.
func (c *Cache) MarkDown(err error) {
	d := &c.down
	d.mu.Lock()
	defer d.mu.Unlock()
	d.until, d.err = time.Now().Add(tune.DownFor), err
	if !d.was {
		d.was = true
		c.log.Warn("cache failed; skipping it for a while (paths it holds are served from the local cache or not at all)", "for", tune.DownFor, "err", err)
	}
}

// MarkUp ends a streak of failures.
func (c *Cache) MarkUp() {
	d := &c.down
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.was {
		d.was, d.until = false, time.Time{}
		c.log.Info("cache answers again")
	}
}

// LocalInfo resolves key (a base name or a hash part) from memory or the
// local record alone, for a cache that is skipped. The result is shared.
func (c *Cache) LocalInfo(key string) (*trust.Path, error) {
	hash, _, named := strings.Cut(key, "-")
	tp, ok := c.narinfos.Get(hash)
	if !ok {
		rec, _, err := c.records.GetRecord(c.recordNS, hash+".narinfo")
		if err != nil {
			return nil, err
		}
		if tp, err = c.parseNarinfo(hash, rec); err != nil {
			return nil, err
		}
	}
	if named && tp.StorePath.String() != key {
		return nil, fmt.Errorf("%s: %w", key, backend.ErrNotFound)
	}
	return tp, nil
}
