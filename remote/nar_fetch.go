package remote

import (
	"context"
	"fmt"
	"time"

	"github.com/narfs/narfs/remote/internal/fetch"
	"github.com/narfs/narfs/remote/internal/tune"
	"github.com/narfs/narfs/remote/localcache"
)

// fetchDeadline bounds one whole download (fetch.Deadline) with the
// configured timeout and slowest rate.
func (s *Store) fetchDeadline(narSize int64) time.Duration {
	return fetch.Deadline(s.cfg.Timeout, s.cfg.Backend.MinRate, narSize)
}

// fetch downloads, decompresses, verifies and extracts one NAR and
// returns its committed entry, pinned. The NAR comes from this cache
// (openNAR), fetch.NAR fills a pending entry of the local cache, and only
// then is it committed and the path's verified listing told.
func (s *Store) fetch(ctx context.Context, p *PathInfo, key string) (*localcache.Entry, error) {
	ni := p.NarInfo
	where := fmt.Sprintf("NAR %s of %s", ni.URL, p.Path)
	ctx, cancel := context.WithTimeout(ctx, s.fetchDeadline(ni.NarSize))
	defer cancel()
	raw, encoding, err := s.openNAR(ctx, ni)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	defer raw.Close()
	pend, err := s.cache.Begin()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	defer pend.Abort()
	verified, owns, err := fetch.NAR(ctx, fetch.Body{R: raw, Encoding: encoding, Stop: cancel}, p.v, pend)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	e, err := pend.Commit(key, ni.NarSize)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	s.trustWritten(e, ownsWritten(owns))
	s.recordNarinfo(p)
	s.verified(p, verified)
	return e, nil
}

// OwnFileMin: a file this large is stored in a file of its own, which the
// kernel can read directly; smaller files are read from the NAR blob at
// their narOffset. It equals MaxRead (see tune.MaxRead for why).
const OwnFileMin = tune.OwnFileMin
