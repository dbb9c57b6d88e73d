// Package chunkindex is narfs's signed chunk index: what lets a reader
// fetch and verify one file of a store path without the rest of its NAR.
//
// A Nix signature covers only the whole NAR's hash, so a stock cache
// allows nothing finer than the whole store path if every byte is to be
// checked. A cache written by narfs push (or upgraded by narfs index)
// carries, per store path, an index the cache's signing key vouches for.
// The cache stays an ordinary Nix binary cache: the NAR object is stored
// with Compression none, or zstd made of independent frames (which Nix
// decodes as one stream), its narinfo holds only keys Nix itself writes
// (so strict parsers, go-nix and nar-serve, read it), and the index is an
// object Nix never asks for.
//
// # Where the index is
//
// At index/<hash part>.nidx (AliasKey), a name known before the narinfo
// arrives: a reader fetches it in parallel with the narinfo, so a lookup
// costs one round trip. The cache says it keeps indexes there in
// nix-cache-info ("NarfsIndexAliases: 1", a line Nix ignores); a reader
// asks for them only of such caches, and a cache that has none for a path
// (one Nix copied there) answers 404: the path is not indexed.
//
// # The index object, layout 2 (what narfs writes)
//
//	narfs-index 2
//	Sig: <key name>:<base64 ed25519 signature>   (1 to MaxSigs lines)
//	<empty line>
//	<payload>
//
// The header is uncompressed and at most MaxHeader bytes. Each signature
// is over
//
//	narfs-index-2;<store path>;<NarHash>;<NarSize>;sha256:<nix32 of the payload's SHA-256>
//
// which no narinfo fingerprint ("1;...") nor layout-1 index fingerprint
// can equal, so no signature can be replayed as another kind; it binds
// the store path and its NAR, and (through the payload, below) the exact
// NAR object. A reader checks a signature by a trusted key over the
// payload before decompressing a byte of it, in every mode: trust in an
// index comes from its signature alone. A reader that trusts narinfos
// without signatures (require-sigs off, trusted=1) still does not trust
// an unsigned index; a path trusted by its content address alone is read
// whole and checked against that address.
//
// # The index object, layout 1 (older narfs; still read)
//
// The bare payload (it starts with the zstd magic), named by narinfo
// lines Nix ignores but strict parsers refuse:
//
//	NarfsIndex: index/<nix32 NarHash>-<nix32 digest>.nidx
//	NarfsIndexSize: <bytes of that object>
//	NarfsIndexSig: <key name>:<base64 ed25519 signature>   (one or more)
//
// each signature over narfs-index-1;<store path>;<NarHash>;<NarSize>;
// sha256:<nix32 of the object's SHA-256>. Such caches may also hold a copy
// at AliasKey, checked against those lines. narfs index moves such a path
// to layout 2 (the payload unchanged, signed anew) and rewrites its
// narinfo without the lines.
//
// Any other object (another "narfs-index N" first line, no signature) is
// rejected: a reader does not guess at what it does not understand.
//
// # The payload
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
// it (nar.Listing.Check), so metadata is signed too. A reader decodes a
// chunk to at most its narLength bytes (a frame that decodes to more, a
// decompression bomb, is refused within one zstd block of that).
//
// # Sizes
//
// An index is bounded by the NAR it describes, so that a reader can
// refuse an inflated object before it has read more than its path can
// need, whatever the narinfo or the server say:
//
//   - Chunks ≤ MaxChunks(NarSize) = 1 + NarSize/32 KiB. Plan cuts at most
//     NarSize/1 MiB + 2·(files of ≥ 128 KiB) + 1 chunks, and there are at
//     most NarSize/128 KiB such files: ≤ 1 + 17·NarSize/1 MiB.
//   - The listing is at most 6·NarSize + 64 KiB bytes: every NAR entry
//     takes at least ~100 bytes of framing plus its name padded, while its
//     JSON takes at most ~100 bytes plus six per name byte (\u00XX).
//   - So the text is at most TextBound(NarSize) = 8 KiB + 145·Chunks +
//     6·NarSize + 64 KiB (and MaxDecoded), and the stored object at most
//     ObjectBound(NarSize) = MaxHeader + that text plus zstd's worst-case
//     expansion (and MaxObject).
//
// A reader downloads at most ObjectBound(NarSize) bytes of an index
// (counted in its listing memory budget while it does), checks the
// signature, and decompresses at most TextBound(NarSize); an index beyond
// these bounds is invalid. Writers (Plan, Encode) stay within them.
//
// An index that fails any of these checks, is signed by no trusted key or
// does not match its narinfo is ignored as a whole: the path is read the
// stock way (whole NAR, verified by NarHash). Nothing of it is trusted
// partially.
package chunkindex
