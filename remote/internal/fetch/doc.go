// Package fetch turns a NAR download into a verified local cache entry:
// a NAR body in, a pending entry (localcache.Pending) filled and a
// verified listing (trust.Listing) out. It knows no store, no cache and
// no path state: what to download, where from, under which deadline, and
// what to do with the entry are its caller's.
//
// # What NAR does
//
// The body goes through the server's transport encoding (if any) and the
// narinfo's compression, then three stages overlap, each on a goroutine
// with bounded queues between them (pipeline.go): download and
// decompression; hashing (verifier.go: NarSize, NarHash, and the content
// address's hash when it covers the whole NAR); parsing and writing
// (nar.go store). A cold fetch costs the slowest stage, not their sum.
// The decompressed stream is cut at NarSize+1 bytes, so a decompression
// bomb is not read far past the limit. The NAR is written at its offsets
// into the entry's blob (blobwriter.go), except the contents of files of
// tune.OwnFileMin bytes or more, which get a file of their own
// (layout.OwnFileName) and the record of their SHA-256 beside it
// (layout.OwnSumName; ownfile.go), so that the content part can check
// such a copy before it serves it whole. Nothing follows the NAR's last token
// (drain). Only when trust.VerifyNAR accepts size and hashes is the blob
// truncated to NarSize and listing.json (layout.ListingMeta) written; the
// caller then commits the entry.
//
// # Errors
//
// Three kinds, which callers branch on: a failure of the body (network,
// cache) as it came, retryable; localcache.ErrLocal (disk full, cache
// dir gone: LocalIOError), remembered briefly; trust.ErrCorrupt for
// bytes that are not the NAR the narinfo vouches for.
//
// # Why this shape
//
// The NAR path is the one place bytes become trusted; keeping it free of
// the store (a body, a trust.Path and a Pending, nothing else) makes the
// rule "unverified data never chooses bytes" checkable here alone, lets
// the extraction be fuzzed without a cache or a server, and lets every
// upstream cache and the local content store share it. The caller stops
// the download through Body.Stop: a Read blocked on the network returns
// only when the context it runs under is cancelled, and NAR must not
// return while its goroutines still use the body and the decoders.
//
// No type here holds more than one mutex (errRecorder's is a leaf).
package fetch
