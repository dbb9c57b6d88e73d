package remote

import (
	"context"
	"fmt"

	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/remote/backend"
	"github.com/narfs/narfs/remote/internal/tune"
)

// remoteListing fetches and checks the unsigned .ls. What can be checked
// without the NAR is: it describes a NAR of exactly the signed NarSize
// (the NAR encoding is canonical, so names, types, sizes and targets
// determine its length and every file's offset), and it fits the memory
// budget. What it says is cross-checked when the NAR is fetched.
func (s *Store) remoteListing(ctx context.Context, p *PathInfo) (*nar.Listing, int64, error) {
	// A .ls can be larger than its NAR only by JSON's escaping of names:
	// six bytes per byte at most.
	// A listing takes more memory decoded than as JSON, so one larger than
	// what a single listing may take of the budget cannot be used.
	limit := min(int64(tune.MaxListing), s.cfg.ListingMemory/tune.ListingShare)
	if n := p.NarInfo.NarSize; n < limit/tune.ListingJSONFactor {
		limit = tune.ListingJSONFactor*n + tune.ListingSlack
	}
	data, err := backend.ReadAll(ctx, s.be, p.Path.Hash+".ls", limit)
	if err != nil {
		return nil, 0, fmt.Errorf("listing %s: %w", p.Path.Hash, err)
	}
	// Decoding takes a few times the JSON's size while it runs: bound what
	// concurrent decodes take together by the budget too.
	weight := min(tune.ListingDecodeFactor*int64(len(data)), s.cfg.ListingMemory)
	if err := s.decoding.Acquire(ctx, weight); err != nil {
		return nil, 0, fmt.Errorf("listing %s: %w", p.Path.Hash, err)
	}
	l, err := nar.DecodeListing(data)
	s.decoding.Release(weight)
	if err != nil {
		return nil, 0, fmt.Errorf("listing %s: %w: %v", p.Path.Hash, ErrCorrupt, err)
	}
	if err := l.Check(p.NarInfo.NarSize); err != nil {
		return nil, 0, fmt.Errorf("listing %s: %w: %v", p.Path.Hash, ErrCorrupt, err)
	}
	cost := l.MemSize()
	if cost > s.cfg.ListingMemory/tune.ListingShare { // as listingCache.fits
		return nil, 0, fmt.Errorf("listing %s: %w: %d bytes in memory, more than a quarter of the listing budget", p.Path.Hash, ErrCorrupt, cost)
	}
	return l, cost, nil
}
