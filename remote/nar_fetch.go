package remote

import (
	"context"
	"fmt"

	"github.com/narfs/narfs/remote/internal/fetch"
	"github.com/narfs/narfs/remote/localcache"
)

// fetch downloads, decompresses, verifies and extracts one NAR and
// returns its committed entry, pinned. The NAR comes from this cache
// (up.OpenNAR), fetch.NAR fills a pending entry of the local cache, and only
// then is it committed and the path's verified listing told.
func (c *cache) fetch(ctx context.Context, p *PathInfo, key string) (*localcache.Entry, error) {
	ni := p.NarInfo
	where := fmt.Sprintf("NAR %s of %s", ni.URL, p.Path)
	ctx, cancel := context.WithTimeout(ctx, fetch.Deadline(c.cfg.Timeout, c.cfg.Backend.MinRate, ni.NarSize))
	defer cancel()
	raw, encoding, err := c.up.OpenNAR(ctx, ni)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	defer raw.Close()
	pend, err := c.disk.Begin()
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
	// The own files this fetch wrote are checked, if they are the ones in
	// the committed entry (another process may have committed its copy
	// first: those are checked when opened).
	for _, w := range ownsWritten(owns) {
		c.local.Written(e, w.name, w.id)
	}
	c.up.RecordNarinfo(p.v)
	c.verified(p, verified)
	return e, nil
}
