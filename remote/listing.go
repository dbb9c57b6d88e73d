package remote

import (
	"context"
	"errors"
	"fmt"

	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/remote/backend"
	"github.com/narfs/narfs/remote/internal/flight"
	"github.com/narfs/narfs/remote/internal/trust"
	"github.com/narfs/narfs/remote/internal/tune"
)

// Listing returns the best known tree of a store path: the verified one
// when its NAR has been fetched, else the cache's <hash>.ls (no NAR
// bytes), else the NAR is fetched. A .ls only ever supplies metadata;
// which bytes a reader gets is decided by the verified listing alone
// (OpenVerified).
func (s *Store) Listing(ctx context.Context, p *PathInfo) (*nar.Listing, error) {
	kl, err := s.listing(ctx, p, true)
	if err != nil {
		return nil, err
	}
	return kl.Listing, nil
}

// VerifiedListing returns the listing built from the store path's
// verified NAR, fetching it if needed.
func (s *Store) VerifiedListing(ctx context.Context, p *PathInfo) (*nar.Listing, error) {
	v, err := s.verifiedListing(ctx, p)
	if err != nil {
		return nil, err
	}
	return v.Tree(), nil
}

// verifiedListing is VerifiedListing's verified listing.
func (s *Store) verifiedListing(ctx context.Context, p *PathInfo) (*trust.Listing, error) {
	if kl, ok := s.listings.get(p.Path.Hash); ok && kl.verified() {
		return kl.v, nil
	}
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	e, err := s.entry(ctx, p)
	if err != nil {
		return nil, err
	}
	defer e.Release()
	return s.entryListing(p, e)
}

// localListing is the verified listing of a path whose NAR is in the
// local cache, or nil.
func (s *Store) localListing(p *PathInfo) *trust.Listing {
	e, err := s.cache.Acquire(trust.EntryKey(p.v))
	if err != nil {
		return nil
	}
	defer e.Release()
	l, err := s.entryListing(p, e)
	if err != nil {
		s.log.Warn("local listing unreadable", "path", p.Path.String(), "err", err)
		return nil
	}
	return l
}

// errNeedNAR: no listing short of fetching the NAR.
var errNeedNAR = errors.New("no listing without the NAR")

// listing is Listing; without fetchNAR it stops with errNeedNAR where
// Listing would fetch the NAR.
func (s *Store) listing(ctx context.Context, p *PathInfo, fetchNAR bool) (*knownListing, error) {
	if kl, ok := s.listings.get(p.Path.Hash); ok {
		return kl, nil
	}
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	key := p.Path.Hash
	if !fetchNAR {
		key += "/no-nar"
	}
	v, err := flight.Shared(ctx, s.log, &s.listingGroup, key, fmt.Sprintf("%s: listing of %s", s.url, p.Path), func() (any, error) {
		// A flight that ended between the check above and Do has already
		// filled the cache.
		if kl, ok := s.listings.get(p.Path.Hash); ok {
			return kl, nil
		}
		ctx, cancel := s.flightContext(ctx)
		defer cancel()
		if v := s.localListing(p); v != nil {
			return knownVerified(v), nil
		}
		if v := s.index(ctx, p); v != nil {
			s.verified(p, v)
			return knownVerified(v), nil
		}
		err := errListingsOff
		if s.unsignedMetadataOK(p) {
			var kl *knownListing
			if kl, err = s.remoteListing(ctx, p); err == nil {
				s.listings.add(p.Path.Hash, kl)
				return kl, nil
			}
		}
		if !errors.Is(err, ErrNotFound) && err != errListingsOff {
			// A broken .ls is the cache's problem, not the reader's: the NAR
			// is the authority, so fall back to it.
			s.log.Warn("ignoring unusable .ls listing", "path", p.Path.String(), "err", err)
		}
		if !fetchNAR {
			return nil, errNeedNAR
		}
		v, err := s.verifiedListing(ctx, p)
		if err != nil {
			return nil, err
		}
		return knownVerified(v), nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*knownListing), nil
}

// errListingsOff: Config.VerifiedMetadataOnly, or an indexed cache
// (unsignedMetadataOK); the NAR is the only source.
var errListingsOff = errors.New(".ls listings not used")

// remoteListing fetches and checks the unsigned .ls. What can be checked
// without the NAR is: it describes a NAR of exactly the signed NarSize
// (the NAR encoding is canonical, so names, types, sizes and targets
// determine its length and every file's offset), and it fits the memory
// budget. What it says is cross-checked when the NAR is fetched.
func (s *Store) remoteListing(ctx context.Context, p *PathInfo) (*knownListing, error) {
	// A .ls can be larger than its NAR only by JSON's escaping of names:
	// six bytes per byte at most.
	// A listing takes more memory decoded than as JSON, so one larger than
	// what a single listing may take of the budget cannot be used.
	limit := min(int64(tune.MaxListing), s.cfg.ListingMemory/4)
	if n := p.NarInfo.NarSize; n < limit/6 {
		limit = 6*n + 64<<10
	}
	data, err := backend.ReadAll(ctx, s.be, p.Path.Hash+".ls", limit)
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", p.Path.Hash, err)
	}
	// Decoding takes a few times the JSON's size while it runs: bound what
	// concurrent decodes take together by the budget too.
	weight := min(3*int64(len(data)), s.cfg.ListingMemory)
	if err := s.decoding.Acquire(ctx, weight); err != nil {
		return nil, fmt.Errorf("listing %s: %w", p.Path.Hash, err)
	}
	l, err := nar.DecodeListing(data)
	s.decoding.Release(weight)
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w: %v", p.Path.Hash, ErrCorrupt, err)
	}
	if err := l.Check(p.NarInfo.NarSize); err != nil {
		return nil, fmt.Errorf("listing %s: %w: %v", p.Path.Hash, ErrCorrupt, err)
	}
	cost := l.MemSize()
	if !s.listings.fits(cost) {
		return nil, fmt.Errorf("listing %s: %w: %d bytes in memory, more than a quarter of the listing budget", p.Path.Hash, ErrCorrupt, cost)
	}
	return &knownListing{Listing: l, cost: cost}, nil
}

// Lookup finds a node by slash-separated sub-path inside a store path.
func (s *Store) Lookup(ctx context.Context, p *PathInfo, sub string) (*nar.Node, error) {
	l, err := s.Listing(ctx, p)
	if err != nil {
		return nil, err
	}
	n, err := l.Find(sub)
	if err != nil {
		// Missing names and paths through files are both "no such file".
		return nil, fmt.Errorf("%s/%s: %w (%v)", p.Path, sub, ErrNotFound, err)
	}
	return n, nil
}
