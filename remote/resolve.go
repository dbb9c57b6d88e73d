package remote

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/narfs/narfs/remote/backend"
	"github.com/narfs/narfs/remote/chunkindex"
	"github.com/narfs/narfs/remote/internal/flight"
	"github.com/narfs/narfs/remote/internal/trust"
	"github.com/narfs/narfs/remote/internal/tune"
	"github.com/narfs/narfs/remote/narinfo"
	"github.com/narfs/narfs/remote/storepath"
)

// PathInfo is a resolved, trusted store path.
type PathInfo struct {
	Path    storepath.StorePath
	NarInfo *narinfo.NarInfo
	// Trust says why the path is trusted, for `narfs info` and logs:
	// "signature by KEY", "content-addressed", or "unchecked".
	Trust string
	// v is the verdict the fields above came from: what the NAR must
	// hash to, and the keys of the path's local state.
	v *trust.Path
	// src is the cache that answered, where its data is read.
	src *Store
}

// Cache is the redacted URL of the cache the path was resolved in.
func (p *PathInfo) Cache() string {
	if p.src == nil {
		return ""
	}
	return p.src.URL()
}

// Abs is the path's absolute store path.
func (p *PathInfo) Abs(storeDir string) string { return p.Path.Abs(storeDir) }

// Resolve maps a store path base name (`<hash>-<name>`) to its trusted
// narinfo. Invalid names, paths the cache lacks and narinfos whose StorePath
// names another path give ErrNotFound; paths nobody trusted vouches for give
// ErrUntrusted; both are remembered for NegativeTTL. A malformed narinfo
// gives ErrCorrupt. Concurrent callers share one request.
func (s *Store) Resolve(ctx context.Context, base string) (*PathInfo, error) {
	sp, err := storepath.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("%s: %w (%v)", base, ErrNotFound, err)
	}
	pi, err := s.info(ctx, sp.Hash)
	if err != nil {
		return nil, err
	}
	// Nix's goodStorePath: the narinfo must describe exactly this path, not
	// just one with the same hash part.
	if pi.Path != sp {
		return nil, fmt.Errorf("%s: %w (cache has %s under that hash)", base, ErrNotFound, pi.Path)
	}
	s.lookahead(pi)
	c := *pi // callers may not share the cached value
	return &c, nil
}

// ResolveHash is Resolve by hash part alone, for `narfs info HASH`, which
// knows no name.
func (s *Store) ResolveHash(ctx context.Context, hash string) (*PathInfo, error) {
	pi, err := s.resolveHash(ctx, hash)
	if err == nil {
		s.lookahead(pi)
	}
	return pi, err
}

// resolveHash is ResolveHash without the lookahead, for the root listing:
// it resolves every path anyway, and looking up every reference's
// listing too would be a walk of the whole cache.
func (s *Store) resolveHash(ctx context.Context, hash string) (*PathInfo, error) {
	if !storepath.ValidHashPart(hash) {
		return nil, fmt.Errorf("%s: %w (not a store path hash)", hash, ErrNotFound)
	}
	pi, err := s.info(ctx, hash)
	if err != nil {
		return nil, err
	}
	c := *pi
	return &c, nil
}

// info returns the trusted path of a hash part with its verdict, from
// memory, the local cache's record of it, or the cache. The verdict is
// kept, not recomputed: it costs a signature check.
func (s *Store) info(ctx context.Context, hash string) (*PathInfo, error) {
	if pi, ok := s.narinfos.Get(hash); ok {
		s.stats.lookup(nil, false)
		return pi, nil
	}
	if err := s.negative.Get(hash); err != nil {
		s.stats.lookup(err, true)
		return nil, err
	}
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	// The fetch is shared, so one caller giving up must not fail the others.
	v, err := flight.Shared(ctx, s.log, &s.resolveGroup, hash, fmt.Sprintf("%s: narinfo %s", s.url, hash), func() (any, error) {
		// A flight that ended between the checks above and Do has already
		// filled one of the caches.
		if pi, ok := s.narinfos.Get(hash); ok {
			return pi, nil
		}
		if err := s.negative.Get(hash); err != nil {
			return nil, err
		}
		ctx, cancel := s.flightContext(ctx)
		defer cancel()
		pi, err := s.lookupNarinfo(ctx, hash)
		if err != nil {
			if errors.Is(err, ErrNotFound) || errors.Is(err, ErrUntrusted) || errors.Is(err, ErrCorrupt) {
				s.negative.AddMiss(hash, err)
				s.log.Debug("narinfo rejected", "hash", hash, "err", err)
			}
			return nil, err
		}
		s.narinfos.Add(hash, pi)
		return pi, nil
	})
	s.stats.lookup(err, false)
	if err != nil {
		return nil, err
	}
	return v.(*PathInfo), nil
}

// lookupNarinfo reads a narinfo from the local record (kept for paths
// whose NAR was fetched) when it is younger than NarinfoTTL, else from the
// cache; when the cache cannot be reached, an older record still answers,
// so paths already fetched keep working offline.
func (s *Store) lookupNarinfo(ctx context.Context, hash string) (*PathInfo, error) {
	rec, written, recErr := s.cache.GetRecord(s.recordNS, hash+".narinfo")
	if recErr == nil && time.Since(written) < s.cfg.NarinfoTTL {
		if pi, err := s.parseNarinfo(hash, rec); err == nil {
			return pi, nil
		}
	}
	s.startIndexAlias(hash)
	data, err := backend.ReadAll(ctx, s.be, hash+".narinfo", tune.MaxSmallObject)
	if err != nil {
		err = fmt.Errorf("narinfo %s: %w", hash, err)
		if recErr == nil && !errors.Is(err, ErrNotFound) {
			if pi, perr := s.parseNarinfo(hash, rec); perr == nil {
				s.log.Warn("cache unreachable; using the narinfo recorded locally", "path", pi.Path.String(), "recorded", written.UTC().Format(time.RFC3339), "err", err)
				return pi, nil
			}
		}
		return nil, err
	}
	return s.parseNarinfo(hash, data)
}

// recordNarinfo keeps a path's narinfo beside its verified NAR, for
// restarts without the cache. Only paths whose NAR was fetched are
// recorded: a walk of a whole bucket's root must not write a file per
// path.
func (s *Store) recordNarinfo(p *PathInfo) {
	if err := s.cache.PutRecord(s.recordNS, p.Path.Hash+".narinfo", p.NarInfo.Marshal()); err != nil {
		s.log.Warn("recording narinfo locally", "path", p.Path.String(), "err", err)
	}
}

// parseNarinfo parses and judges a narinfo for hash.
func (s *Store) parseNarinfo(hash string, data []byte) (*PathInfo, error) {
	ni, err := narinfo.Parse(data)
	if err != nil {
		s.log.Warn("malformed narinfo", "hash", hash, "err", err)
		return nil, fmt.Errorf("narinfo %s: %w: %v", hash, ErrCorrupt, err)
	}
	if ni.StorePath.Hash != hash {
		return nil, fmt.Errorf("narinfo %s: %w: it describes %s", hash, ErrCorrupt, ni.StorePath)
	}
	if ni.StoreDir != s.storeDir {
		return nil, fmt.Errorf("narinfo %s: %w: store path %s is not under %s", hash, ErrNotFound, ni.StorePath.Abs(ni.StoreDir), s.storeDir)
	}
	tp, err := trust.Judge(ni, s.cfg.TrustedKeys, s.trustAll)
	if err != nil {
		s.log.Info("untrusted path hidden", "path", ni.StorePath.String(), "err", err)
		return nil, fmt.Errorf("narinfo %s: %w", hash, err)
	}
	if _, ok := ni.Get(chunkindex.KeyURL); ok {
		// A cache that indexes one path likely indexes the next: ask for
		// their indexes together with their narinfos from now on.
		s.aliases.on.Store(true)
	}
	return &PathInfo{Path: ni.StorePath, NarInfo: ni, Trust: tp.Why, v: tp, src: s}, nil
}

// recordNamespace separates the local records of different caches sharing
// one cache dir: a narinfo is only as good as the cache it came from.
func recordNamespace(storeURL string) string {
	d := sha256.Sum256([]byte(storeURL))
	return hex.EncodeToString(d[:8])
}
