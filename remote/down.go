package remote

import "github.com/narfs/narfs/remote/internal/upstream"

// errSkipped: the cache failed recently and is not asked until
// tune.DownFor has passed.
var errSkipped = upstream.ErrSkipped

// skipping is non-nil while the cache is skipped after a failure.
func (s *Store) skipping() error { return s.up.Skipping() }

// markDown skips the cache for a while after err (upstream.Cache.MarkDown).
func (s *Store) markDown(err error) { s.up.MarkDown(err) }

// markUp ends a streak of failures.
func (s *Store) markUp() { s.up.MarkUp() }

// localInfo resolves key (a base name or a hash part) from memory or the
// local record alone, for a cache that is skipped.
func (s *Store) localInfo(key string) (*PathInfo, error) {
	tp, err := s.up.LocalInfo(key)
	if err != nil {
		return nil, err
	}
	return s.pathInfo(tp), nil
}
