// Package upload writes binary caches that narfs can read file by file:
// narfs push (store paths from the local Nix store), narfs index (an
// existing cache upgraded in place) and narfs verify (every claim a cache
// makes about a path, checked).
//
// # What a path's upload writes, in order
//
//	nar/<nix32 FileHash>.nar.zst   the NAR as independent zstd frames (or .nar, uncompressed)
//	index/<nix32 NarHash>-<nix32 digest>.nidx   the signed chunk index (remote/chunkindex)
//	<hash>.ls                      the listing, with narOffset, uncompressed JSON
//	<hash>.narinfo                 last: Nix's fields, a new Sig, NarfsIndex*
//
// The narinfo comes last, so a reader that finds it finds everything it
// names; an interrupted run leaves only unreferenced objects, which a
// rerun overwrites with the same bytes (object and index keys are
// content hashes). Within one push, a path's narinfo is written only
// after those of its references, as nix copy does, so the cache never
// names a path whose closure it lacks.
//
// # Memory
//
// NARs are streamed, never held whole: a NAR is read twice (once for its
// hash and listing, which chunk planning needs first, once through the
// chunk builder into a temporary file that is then uploaded). A pushed
// path is dumped twice from the local store; an indexed or verified path
// is downloaded once into a temporary file.
//
// # Trust
//
// Push checks every NAR against the hash and size the local store
// recorded before signing anything. It skips a path only when the cache
// holds a narinfo for it that parses, matches the local NarHash and
// NarSize, is signed by the pushing key or a trusted one and names an
// object that is there; any other narinfo at that name (junk, another
// path's, unsigned) is replaced. Index signs only paths whose narinfo a
// trusted key (or its own) signed — a content address vouches for
// NarHash, not for NarSize — checks the downloaded NAR against NarHash and
// NarSize before writing a byte, and keeps every narinfo line it does not
// replace: Nix's signature covers the store path, NarHash, NarSize and
// References, none of which change. Both refuse a cache whose
// nix-cache-info names another StoreDir, as Nix does.
//
// Temporary files are bounded by the signed NarSize: the object by
// objectBound, the NAR decoded from it by NarSize; a byte more fails the
// path, so an endless object or a decompression bomb costs no more disk
// than the path's real size.
//
// # Time
//
// Open and OpenRead bound every request (backend.ProgressDeadlines): a
// cache that never answers costs RequestTimeout, retries included; one
// that sends keeps the request alive as long as it sends at MinRate.
package upload
