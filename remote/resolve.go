package remote

import (
	"context"
	"fmt"

	"github.com/narfs/narfs/remote/internal/trust"
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
	src *cache
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

// resolve maps a store path base name (`<hash>-<name>`) to its trusted
// narinfo. Invalid names, paths the cache lacks and narinfos whose StorePath
// names another path give ErrNotFound; paths nobody trusted vouches for give
// ErrUntrusted; both are remembered for NegativeTTL. A malformed narinfo
// gives ErrCorrupt. Concurrent callers share one request.
func (c *cache) resolve(ctx context.Context, base string) (*PathInfo, error) {
	sp, err := storepath.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("%s: %w (%v)", base, ErrNotFound, err)
	}
	pi, err := c.info(ctx, sp.Hash)
	if err != nil {
		return nil, err
	}
	// Nix's goodStorePath: the narinfo must describe exactly this path, not
	// just one with the same hash part.
	if pi.Path != sp {
		return nil, fmt.Errorf("%s: %w (cache has %s under that hash)", base, ErrNotFound, pi.Path)
	}
	c.ahead.lookahead(pi)
	cp := *pi // callers may not share the cached value
	return &cp, nil
}

// resolveHash is resolve by hash part alone, for `narfs info HASH`,
// which knows no name. It starts no lookahead (Core.ResolveHash does):
// the root listing resolves every path anyway, and looking up every
// reference's listing too would be a walk of the whole cache.
func (c *cache) resolveHash(ctx context.Context, hash string) (*PathInfo, error) {
	if !storepath.ValidHashPart(hash) {
		return nil, fmt.Errorf("%s: %w (not a store path hash)", hash, ErrNotFound)
	}
	pi, err := c.info(ctx, hash)
	if err != nil {
		return nil, err
	}
	cp := *pi
	return &cp, nil
}

// info returns the trusted path of a hash part with its verdict
// (upstream.Cache.Info: memory, the local record, or the cache).
func (c *cache) info(ctx context.Context, hash string) (*PathInfo, error) {
	tp, err := c.up.Info(ctx, hash)
	if err != nil {
		return nil, err
	}
	return c.pathInfo(tp), nil
}

// pathInfo is the PathInfo of a verdict of this cache.
func (c *cache) pathInfo(tp *trust.Path) *PathInfo {
	return &PathInfo{Path: tp.StorePath, NarInfo: tp.NarInfo, Trust: tp.Why, v: tp, src: c}
}

// localInfo resolves key (a base name or a hash part) from memory or the
// local record alone, for a cache that is skipped (upstream.ErrSkipped).
func (c *cache) localInfo(key string) (*PathInfo, error) {
	tp, err := c.up.LocalInfo(key)
	if err != nil {
		return nil, err
	}
	return c.pathInfo(tp), nil
}
