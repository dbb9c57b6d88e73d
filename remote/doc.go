// Package remote is narfs's FUSE-free core: it opens a binary cache by its
// Nix store URL, resolves store paths to verified narinfos, produces their
// listings and lays verified NAR contents out in the local cache, from which
// the mount (package fs) and the CLI serve reads.
//
// # Resolution
//
// Resolve turns a store path base name into a PathInfo: one GET of
// <hash>.narinfo, shared by every concurrent caller (singleflight), kept in
// an in-memory LRU; misses, malformed and untrusted narinfos are remembered
// for Config.NegativeTTL (an hour by default, like Nix) so that a busy
// mount does not hammer the cache with lookups of paths it does not have.
//
// # Trust
//
// A narinfo is trusted when one of its signatures verifies under a trusted
// key, or when it is content-addressed and its CA field, name and
// references recompute to its store path (then the NAR must also hash to
// what the CA says), or when the caller turned signature checking off.
//
// # Metadata and data
//
// Listing prefers the cache's <hash>.ls, so stat and readdir fetch no NAR
// bytes. Root, all a lookup in the store directory needs, falls back to the
// first header of the NAR (its first 256 KiB at most) when there is no .ls. Materialize fetches the NAR once per NarHash, decompresses it as a
// stream, checks NarSize and NarHash (and the CA hash where that was the
// reason for trust) and only then renames the extracted tree into the local
// cache. Nothing that failed verification is kept or served: the caller gets
// an error wrapping ErrCorrupt. When the NAR disagrees with the .ls listing
// the metadata already handed out was a lie, so that is corruption too.
//
// # Errors
//
// Callers branch on ErrNotFound, ErrUntrusted and ErrCorrupt with errors.Is;
// everything else is a transient failure of the cache (network, server) and
// is not cached.
package remote
