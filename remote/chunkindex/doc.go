// Package chunkindex is narfs's signed chunk index: what lets a reader
// fetch and verify one file of a store path without the rest of its NAR.
//
// A Nix signature covers only the whole NAR's hash, so a stock cache
// allows nothing finer than the whole store path if every byte is to be
// checked. A cache written by narfs push (or upgraded by narfs index)
// carries, per store path, an index the cache's signing key vouches for.
// The cache stays an ordinary Nix binary cache: the NAR object is stored
// with Compression none, or zstd made of independent frames (which Nix
// decodes as one stream), and the index is found through narinfo lines
// that Nix ignores.
//
// # In the narinfo
//
//	NarfsIndex: index/<nix32 NarHash>-<nix32 digest>.nidx
//	NarfsIndexSize: <bytes of that object>
//	NarfsIndexSig: <key name>:<base64 ed25519 signature>   (one or more)
//
// These lines are not covered by the narinfo's own signature (nor need
// they be): the index signature is over
//
//	narfs-index-1;<store path>;<NarHash>;<NarSize>;sha256:<nix32 of the index object's SHA-256>
//
// which no narinfo fingerprint ("1;...") can equal, so neither signature
// can be replayed as the other. A reader downloads the index (at most
// NarfsIndexSize bytes, one round trip after the narinfo, instead of the
// .ls), hashes what it got and checks a signature by a trusted key before
// decompressing a byte of it.
//
// # Found with the narinfo
//
// A cache written by narfs also keeps each index under a name of its hash
// part alone, index/<hash part>.nidx (AliasKey), and says so in
// nix-cache-info ("NarfsIndexAliases: 1", a line Nix ignores). A reader of
// such a cache fetches that copy in parallel with the narinfo, so a
// lookup costs one round trip, not two; the copy is checked exactly as the
// object the narinfo names, and one that does not verify (a path
// re-indexed since, a foreign object) is ignored for the narinfo's. Nor
// is one waited for long: a copy not there within as long again as it has
// been in flight (0.5 to 2 s) is given up for the narinfo's, and the
// reader asks for no alias for a minute after.
//
// # The index object
//
// zstd of a text document:
//
//	narfs-index 1
//	StorePath: /nix/store/<hash>-<name>
//	NarHash: sha256:<nix32>
//	NarSize: <decimal>
//	URL: <the NAR object's URL, as in the narinfo>
//	Compression: none|zstd
//	FileSize: <decimal size of that object>
//	FileHash: sha256:<nix32 of that object>
//	Chunks: <count>
//	Listing: <bytes of the listing below>
//	<empty line>
//	<narOffset> <narLength> <fileOffset> <fileLength> <hex SHA-256>   (one line per chunk)
//	<the full listing: Nix's .ls JSON, narOffset set on every file>
//
// It binds the store path, the NAR (NarHash, NarSize) and the exact
// object it describes (URL, compression, size and hash), so it cannot be
// moved to another path or another object. Chunk k covers bytes
// [narOffset, narOffset+narLength) of the uncompressed NAR, and bytes
// [fileOffset, fileOffset+fileLength) of the object decode, on their
// own, to exactly those bytes: with Compression none the two ranges are
// the same; with zstd the object range is one or more whole frames. The
// chunks cover [0, NarSize) and [0, FileSize) contiguously and in order,
// each at most MaxChunk bytes of NAR. The listing must describe a NAR of
// exactly NarSize bytes with every file's narOffset where that NAR puts
// it (nar.Listing.Check), so metadata is signed too.
//
// An index that fails any of these checks, is signed by no trusted key or
// does not match its narinfo is ignored as a whole: the path is read the
// stock way (whole NAR, verified by NarHash). Nothing of it is trusted
// partially.
package chunkindex
