package remote

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/narfs/narfs/remote/internal/tune"
)

// errSkipped: the cache failed recently and is not asked until downFor
// has passed.
var errSkipped = errors.New("cache skipped after a failure")

// downState remembers that a cache of a Substituters failed a lookup.
type downState struct {
	mu    sync.Mutex // protects the fields below
	until time.Time  // skipped until then
	err   error      // why
	was   bool       // down since the last answer; logged once
}

// skipping is non-nil while the cache is skipped after a failure.
func (s *Store) skipping() error {
	d := &s.down
	d.mu.Lock()
	defer d.mu.Unlock()
	if time.Now().Before(d.until) {
		return fmt.Errorf("%s: %w (%v)", s.url, errSkipped, d.err)
	}
	return nil
}

// markDown skips the cache for downFor after err, logging the first
// failure of a streak only: a cache that stays down is tried once a
// minute, and says so once.
func (s *Store) markDown(err error) {
	d := &s.down
	d.mu.Lock()
	defer d.mu.Unlock()
	d.until, d.err = time.Now().Add(tune.DownFor), err
	if !d.was {
		d.was = true
		s.log.Warn("cache failed; skipping it for a while (paths it holds are served from the local cache or not at all)", "for", tune.DownFor, "err", err)
	}
}

// markUp ends a streak of failures.
func (s *Store) markUp() {
	d := &s.down
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.was {
		d.was, d.until = false, time.Time{}
		s.log.Info("cache answers again")
	}
}

// localInfo resolves key (a base name or a hash part) from memory or the
// local record alone, for a cache that is skipped.
func (s *Store) localInfo(key string) (*PathInfo, error) {
	hash, _, named := strings.Cut(key, "-")
	pi, ok := s.narinfos.Get(hash)
	if !ok {
		rec, _, err := s.cache.GetRecord(s.recordNS, hash+".narinfo")
		if err != nil {
			return nil, err
		}
		if pi, err = s.parseNarinfo(hash, rec); err != nil {
			return nil, err
		}
	}
	if named && pi.Path.String() != key {
		return nil, fmt.Errorf("%s: %w", key, ErrNotFound)
	}
	c := *pi
	return &c, nil
}
