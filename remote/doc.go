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
// Lookup prefers the cache's <hash>.ls, so stat and readdir fetch no NAR
// bytes. Root, all a lookup in the store directory needs, falls back to the
// first header of the NAR (its first 256 KiB at most) when there is no
// .ls. Both are unsigned: they only ever supply metadata, and a .ls is
// refused unless it describes a NAR of exactly the signed NarSize (the
// NAR encoding is canonical, so a listing determines its NAR's length and
// every file's offset) and fits the listing memory budget. A store path
// that is a single symlink is verified before its target is shown.
//
// The NAR is fetched once per download (its URL and narinfo identity, so
// one path's bad narinfo never blocks another's), decompressed as a
// stream, checked against NarSize and NarHash (and the CA hash where that
// was the reason for trust), with nothing allowed after its last token,
// and only then committed to the local cache (package localcache), keyed
// by NarHash. From then on the listing built from it is the only answer:
// which file a reader opens is chosen in that verified listing, the open
// never follows a symlink or leaves the entry, a .ls that disagreed is
// logged and counted, and the path's generation moves (Core.Subscribe)
// so that the mount can drop what the kernel cached of the lie. Nothing that failed verification is kept
// or served: the caller gets an error wrapping ErrCorrupt.
//
// # Local layout
//
// A fetched NAR is kept as one blob file (plus a file of its own for each
// file of MaxRead bytes or more, which the kernel can read by
// passthrough); small files are read from the blob at their narOffset.
// This costs one file creation per NAR instead of one per entry. While
// its small files are being opened, the blob stays open (a warm blob, for
// two seconds after its last reader, without a pin): an open of one of
// them then costs a lookup in the verified listing, no syscall, which is
// what a walk of a many-file path (tar, a build reading sources) is made
// of.
//
// # Indexed paths
//
// A narinfo may name a chunk index (package chunkindex) signed by a
// trusted key. It is fetched in place of the .ls, checked (signature
// first, then every invariant, then that it describes this narinfo's NAR
// and object) and, if anything is wrong, ignored as a whole: the path is
// read as from any stock cache. A valid index's listing is signed, so it
// is the verified listing from the start. Its files are read chunk by
// chunk (Core.Open decides): a read fetches the chunks it covers with ranged
// GETs, adjacent ones coalesced and more ahead while reads are
// sequential, verifies each chunk's SHA-256 before any byte of it is
// served, and keeps it in a sparse per-NAR blob (package blob). A chunk
// that fails is an error of its reads only. A path stored in at most
// Config.IndexedWholeMax bytes is fetched whole in the background from its
// first read, in parallel requests, as reads of small paths tend to touch
// much of them one file after another.
//
// # Time
//
// Every user-facing operation (a lookup, a listing, an open) answers
// within Config.Timeout, retries included. Work shared by several
// callers outlives the caller that started it, but not its own bound: a
// narinfo or .ls by Timeout, a NAR download by Timeout plus its NarSize
// at the backend's minimum rate, below which a body counts as stalled. A
// download that stalls fails, so the next reader starts afresh.
//
// # Offline
//
// Trusted narinfos are recorded in the local cache and used for
// Config.NarinfoTTL (30 days, like Nix) without asking the cache, and
// past it whenever the cache cannot be reached; the verified listing lives
// beside the NAR's entry. So a restart with the cache down serves every
// path whose NAR is held locally; other paths fail within the timeout.
//
// # Errors
//
// Callers branch on ErrNotFound, ErrUntrusted and ErrCorrupt with
// errors.Is; ErrBug marks a panic that was caught and logged. Corrupt
// downloads are remembered for a minute, failures of the local disk with
// a backoff from 2 s to 2 min; everything else is a transient failure of
// the cache (network, server) and is not remembered.
package remote
