package upstream

import (
	"context"
	"fmt"

	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/remote/backend"
	"github.com/narfs/narfs/remote/internal/trust"
	"github.com/narfs/narfs/remote/internal/tune"
	"github.com/narfs/narfs/remote/stats"
)

// Listing fetches and checks the unsigned .ls. What can be checked
// without the NAR is: it describes a NAR of exactly the signed NarSize
// (the NAR encoding is canonical, so names, types, sizes and targets
// determine its length and every file's offset), and it fits the memory
// budget. What it says is cross-checked when the NAR is fetched.
//
// It returns the listing and its cost in memory (nar.Listing.MemSize).
func (c *Cache) Listing(ctx context.Context, p *trust.Path) (*nar.Listing, int64, error) {
	// A .ls can be larger than its NAR only by JSON's escaping of names:
	// six bytes per byte at most.
	// A listing takes more memory decoded than as JSON, so one larger than
	// what a single listing may take of the budget cannot be used.
	limit := min(int64(tune.MaxListing), c.o.ListingMemory/tune.ListingShare)
	if n := p.NarInfo.NarSize; n < limit/tune.ListingJSONFactor {
		limit = tune.ListingJSONFactor*n + tune.ListingSlack
	}
	data, err := backend.ReadAll(ctx, c.counted.For(stats.KindListing), p.StorePath.Hash+".ls", limit)
	if err != nil {
		return nil, 0, fmt.Errorf("listing %s: %w", p.StorePath.Hash, err)
	}
	// Decoding takes a few times the JSON's size while it runs: bound what
	// concurrent decodes take together by the budget too.
	weight := min(tune.ListingDecodeFactor*int64(len(data)), c.o.ListingMemory)
	if err := c.decoding.Acquire(ctx, weight); err != nil {
		return nil, 0, fmt.Errorf("listing %s: %w", p.StorePath.Hash, err)
	}
	l, err := nar.DecodeListing(data)
	c.decoding.Release(weight)
	if err != nil {
		return nil, 0, fmt.Errorf("listing %s: %w: %v", p.StorePath.Hash, trust.ErrCorrupt, err)
	}
	if err := l.Check(p.NarInfo.NarSize); err != nil {
		return nil, 0, fmt.Errorf("listing %s: %w: %v", p.StorePath.Hash, trust.ErrCorrupt, err)
	}
	cost := l.MemSize()
	if cost > c.o.ListingMemory/tune.ListingShare { // as listingCache.fits
		return nil, 0, fmt.Errorf("listing %s: %w: %d bytes in memory, more than a quarter of the listing budget", p.StorePath.Hash, trust.ErrCorrupt, cost)
	}
	return l, cost, nil
}
