package remote

import (
	"context"
	"errors"
	"fmt"

	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/remote/internal/flight"
	"github.com/narfs/narfs/remote/internal/trust"
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
			var l *nar.Listing
			var cost int64
			if l, cost, err = s.remoteListing(ctx, p); err == nil {
				kl := &knownListing{Listing: l, cost: cost}
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

// verified makes the NAR's listing the only answer for the path from now
// on and tells the mount, which drops what the kernel cached of any other
// answer. Metadata from the unsigned .ls (or the NAR's first header) may
// already have been handed out; if it disagrees, the .ls lied.
// The listing may carry the path's chunk index (it came from one).
func (s *Store) verified(p *PathInfo, v *trust.Listing) {
	kl := knownVerified(v)
	l := kl.Listing
	if old, ok := s.listings.get(p.Path.Hash); ok {
		if !old.verified() && !nar.SameTree(old.Root, l.Root) {
			s.up.Counters().Corrupt.Add(1)
			s.log.Error("the cache's .ls listing disagrees with the verified NAR; the NAR's listing is used from now on", "path", p.Path.String())
		}
		if old.index() != nil && kl.index() == nil && nar.SameTree(old.Root, l.Root) {
			// The NAR was fetched whole as well: keep reading by chunks.
			kl = old
		}
	}
	s.listings.add(p.Path.Hash, kl)
	s.hooksMu.Lock()
	hooks := s.onVerified
	s.hooksMu.Unlock()
	for _, fn := range hooks {
		fn(p, l)
	}
}

// OnVerified registers fn to be called, on the fetching goroutine, each
// time a store path's NAR has been verified, with the listing built from
// it. fn must not block.
func (s *Store) OnVerified(fn func(p *PathInfo, l *nar.Listing)) {
	s.hooksMu.Lock()
	defer s.hooksMu.Unlock()
	s.onVerified = append(s.onVerified, fn)
}
