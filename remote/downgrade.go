package remote

import "github.com/narfs/narfs/remote/chunkindex"

// A chunk index carries a signed listing, so on an indexed cache the
// unsigned .ls (and a peek at the NAR's first header) is never needed for
// metadata. Whoever can write to such a cache without its key could
// otherwise reopen the .ls hole by downgrade: strip or spoil the index and
// add a lying .ls. unsignedMetadataOK refuses unsigned metadata for every
// path such a cache has, whenever one of these says it is indexed:
//
//   - the cache declares indexes (NarfsIndexAliases: 1 in its
//     nix-cache-info, or one of its narinfos named an index);
//   - the path's narinfo names an index (caches written before aliases);
//   - an index of the path verified here before (its record is kept in
//     the local cache beside the path's narinfo).
//
// Then the path's metadata comes from its index or, when that fails
// (missing, spoiled, not answering), from its verified NAR, as with
// --verified-metadata-only. What is left: a writer who also strips the
// nix-cache-info line and the narinfo lines can still show .ls metadata,
// within the NarSize limits, for paths this host never verified an index
// of; --verified-metadata-only closes that too.
func (c *cache) unsignedMetadataOK(p *PathInfo) bool {
	if c.cfg.VerifiedMetadataOnly || c.up.IndexesDeclared() {
		return false
	}
	if _, ok := p.NarInfo.Get(chunkindex.KeyURL); ok {
		return false
	}
	return !c.indexVerified(p)
}

// indexVerified reports whether the path's chunk index verified in this
// cache, now or earlier (a listing held, or the index kept beside the
// path's records from an earlier run and still verifying).
func (c *cache) indexVerified(p *PathInfo) bool {
	if kl, ok := known(c.listings, p.Path.Hash); ok && kl.index() != nil {
		return true
	}
	return c.up.IndexRecorded(p.Path.Hash)
}
