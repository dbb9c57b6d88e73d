package remote

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/remote/backend"
	"github.com/narfs/narfs/remote/storepath"
)

// Listing returns the tree of a store path. It reads, in order: memory,
// the local cache, the cache's <hash>.ls (no NAR bytes), and only then
// fetches the NAR (which also fills the local cache).
func (s *Store) Listing(ctx context.Context, p *PathInfo) (*nar.Listing, error) {
	return s.listing(ctx, p, true)
}

// errNeedNAR: no listing short of fetching the NAR.
var errNeedNAR = errors.New("no listing without the NAR")

// listing is Listing; without fetchNAR it stops with errNeedNAR where
// Listing would fetch the NAR.
func (s *Store) listing(ctx context.Context, p *PathInfo, fetchNAR bool) (*nar.Listing, error) {
	if l, ok := s.listings.Get(p.Path.Hash); ok {
		return l, nil
	}
	key := p.Path.Hash
	if !fetchNAR {
		key += "/no-nar"
	}
	v, err := shared(ctx, &s.listingGroup, key, func() (any, error) {
		// A flight that ended between the check above and Do has already
		// filled the cache.
		if l, ok := s.listings.Get(p.Path.Hash); ok {
			return l, nil
		}
		ctx := context.WithoutCancel(ctx)
		if l := s.cachedListing(p); l != nil {
			s.listings.Add(p.Path.Hash, l)
			return l, nil
		}
		err := errListingsOff
		if !s.cfg.VerifiedMetadataOnly {
			var l *nar.Listing
			if l, err = s.remoteListing(ctx, p); err == nil {
				s.listings.Add(p.Path.Hash, l)
				return l, nil
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
		if _, err := s.Materialize(ctx, p); err != nil {
			return nil, err
		}
		if l := s.cachedListing(p); l != nil {
			s.listings.Add(p.Path.Hash, l)
			return l, nil
		}
		return nil, fmt.Errorf("%s: listing vanished from the local cache", p.Path)
	})
	if err != nil {
		return nil, err
	}
	return v.(*nar.Listing), nil
}

// errListingsOff: Config.VerifiedMetadataOnly; the NAR is the only source.
var errListingsOff = errors.New(".ls listings not used")

// cachedListing reads the listing stored beside an extracted NAR.
func (s *Store) cachedListing(p *PathInfo) *nar.Listing {
	root := s.cache.root(storepath.EncodeNix32(p.NarInfo.NarHash.Digest))
	if root == "" {
		return nil
	}
	data, err := os.ReadFile(filepath.Join(filepath.Dir(root), "listing.json"))
	if err != nil {
		return nil
	}
	l, err := nar.DecodeListing(data)
	if err != nil {
		s.log.Warn("local listing unreadable", "path", p.Path.String(), "err", err)
		return nil
	}
	return l
}

func (s *Store) remoteListing(ctx context.Context, p *PathInfo) (*nar.Listing, error) {
	data, err := backend.ReadAll(ctx, s.be, p.Path.Hash+".ls", maxListing)
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", p.Path.Hash, err)
	}
	l, err := nar.DecodeListing(data)
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w: %v", p.Path.Hash, ErrCorrupt, err)
	}
	// The .ls is unsigned: at least make sure it fits in the signed NarSize
	// before trusting its sizes. The NAR is compared with it when fetched.
	var total int64
	if err := walkListing(l.Root, func(n *nar.Node) error {
		if n.Type == nar.TypeRegular {
			total += n.Size
			if n.Size < 0 || total > p.NarInfo.NarSize || n.NarOffset+n.Size > p.NarInfo.NarSize {
				return fmt.Errorf("sizes exceed NarSize %d", p.NarInfo.NarSize)
			}
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("listing %s: %w: %v", p.Path.Hash, ErrCorrupt, err)
	}
	return l, nil
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

func walkListing(n *nar.Node, fn func(*nar.Node) error) error {
	if err := fn(n); err != nil {
		return err
	}
	for _, c := range n.Entries {
		if err := walkListing(c, fn); err != nil {
			return err
		}
	}
	return nil
}

// sameListing compares what a user sees: types, sizes, executable bits,
// targets and names. NarOffsets are ignored where either side lacks one
// (Nix versions differ on empty files).
func sameListing(a, b *nar.Node) bool {
	if a.Type != b.Type || a.Size != b.Size || a.Executable != b.Executable || a.Target != b.Target {
		return false
	}
	if a.NarOffset != 0 && b.NarOffset != 0 && a.NarOffset != b.NarOffset {
		return false
	}
	if len(a.Entries) != len(b.Entries) {
		return false
	}
	for name, ca := range a.Entries {
		cb, ok := b.Entries[name]
		if !ok || !sameListing(ca, cb) {
			return false
		}
	}
	return true
}
