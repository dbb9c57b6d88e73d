package remote

import (
	"context"
	"errors"
	"fmt"

	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/remote/chunkindex"
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
	if kl, ok := s.known(p.Path.Hash); ok && kl.verified() {
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
	if kl, ok := s.known(p.Path.Hash); ok {
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
		if kl, ok := s.known(p.Path.Hash); ok {
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
				s.listings.SetUnverified(p.Path.Hash, l, cost)
				return &knownListing{Listing: l, cost: cost}, nil
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
	kl, err := s.listing(ctx, p, true)
	if err != nil {
		return nil, err
	}
	if !kl.verified() {
		// Unverified metadata handed out: the verification that follows
		// tells (Core.Subscribe) if it contradicts it.
		s.listings.Handed(p.Path.Hash, kl.Root, kl.Listing)
	}
	n, err := kl.Find(sub)
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
	l := v.Tree()
	keep := false
	if st, ok := s.listings.Get(p.Path.Hash); ok && st.Verified != nil {
		// The NAR was fetched whole as well: keep reading by chunks.
		keep = st.Verified.Index() != nil && v.Index() == nil && nar.SameTree(st.Verified.Tree().Root, l.Root)
	}
	if !keep {
		if _, contradicted := s.listings.SetVerified(p.Path.Hash, v); contradicted {
			s.up.Counters().Corrupt.Add(1)
			s.log.Error("the cache's .ls listing disagrees with the verified NAR; the NAR's listing is used from now on", "path", p.Path.String())
		}
	}
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

// knownListing is a store path's listing with where it came from.
type knownListing struct {
	*nar.Listing
	// v, when set, is the verified listing (Listing is its tree): built
	// from the NAR after NarHash matched, or from a verified chunk index.
	// Otherwise the listing came from the unsigned .ls (or a NAR header)
	// and only describes metadata; no byte a reader gets is chosen by it.
	v    *trust.Listing
	cost int64
}

// knownVerified wraps a verified listing.
func knownVerified(v *trust.Listing) *knownListing {
	return &knownListing{Listing: v.Tree(), v: v, cost: v.Cost()}
}

func (kl *knownListing) verified() bool { return kl.v != nil }

// index is the path's verified chunk index, or nil.
func (kl *knownListing) index() *chunkindex.Index { return kl.v.Index() }

// indexObject is the object the index was decoded from.
func (kl *knownListing) indexObject() []byte { return kl.v.Object() }

// known is the best listing the table holds of hash: the verified one,
// else the unverified .ls, else a lone file's peeked root.
func (s *Store) known(hash string) (*knownListing, bool) {
	st, ok := s.listings.Get(hash)
	if !ok {
		return nil, false
	}
	switch {
	case st.Verified != nil:
		return knownVerified(st.Verified), true
	case st.Unverified != nil:
		return &knownListing{Listing: st.Unverified}, true
	case st.Peeked != nil && st.Peeked.Type == nar.TypeRegular:
		// A lone file: the header is the whole listing.
		return &knownListing{Listing: &nar.Listing{Root: st.Peeked}}, true
	}
	return nil, false
}
