// Package remote is narfs's FUSE-free core: it opens the binary caches a
// mount reads by their Nix store URLs, resolves store paths to trusted
// narinfos, answers their metadata and serves their files' verified bytes
// from a local cache. The mount (package fs), the CLI (cmd/narfs) and the
// daemon socket (remote/nixdaemon) use it alike, through one API: Open
// gives a Core; Resolve, ResolveHash and Paths give PathInfos; Root,
// Lookup and VerifiedListing answer metadata; Core.Open gives a File (its
// verified node, ReadAt, ReadCached, Reader, a Passthrough descriptor
// when it has one); Gen, Subscribe and Forget tell when metadata handed
// out was contradicted; LookAhead and Prefetch fetch a path's listing or
// data ahead of readers; Stats, Close. The examples show it end to end.
//
// # The parts, along the data path
//
// The core is a few parts, each a package with its own doc under
// remote/internal; this package holds the API and orchestrates them. In
// the order bytes travel:
//
//	upstream   one binary cache: its backend (counted, bounded in time),
//	           narinfos and their trust verdicts (memory, local records,
//	           negative memo, one request per hash), the small unverified
//	           objects (.ls, a NAR's first header), chunk indexes, a NAR's
//	           body (one GET or ranged parts), its liveness
//	fetch      a NAR body in, a filled local entry and a verified listing
//	           out: decompress, hash, extract, verify; it knows no cache
//	content    the local disk, one per cache dir, shared by every cache:
//	           entries and the downloads that make them, warm descriptors,
//	           blobs and chunked reads of indexed paths, own files
//	pathstate  per cache, what is known of each path's metadata (the
//	           unverified .ls, a peeked root, the verified listing) and
//	           the generations that say when what was shown was wrong
//	trust      what may be believed: narinfo verdicts (Judge), content
//	           addresses, the keys of local state, the verified listing
//
// The leaves: tune (every tunable, with its reason), memo (failures
// remembered for a while), flight (work shared by concurrent callers that
// survives one caller's cancellation and a panic), workq (background
// queues), layout (the names of an entry's files); remote/stats is the
// counters' vocabulary. Below them all: nar, remote/backend,
// remote/narinfo, remote/chunkindex, remote/localcache, remote/blob.
//
// For each cache, the core keeps its upstream.Cache, its pathstate.Table
// and its background queues (lookahead of references' narinfos and
// listings, prefetch of their data); the content.Store is one for all of
// them, so content reached through two caches is downloaded, stored and
// held open once. A PathInfo remembers the cache that resolved it, and
// every later operation on it goes there.
//
// # Per-path state
//
// pathstate is the one owner of what a cache knows of a path's metadata;
// no front end keeps a copy. Root and Lookup may answer from unverified
// metadata (when the class-2 rule of downgrade.go allows it) and record
// what they handed out. When the path is verified, its generation moves
// exactly when the verified listing contradicts that record; then every
// subscriber is told, on the verifying goroutine, before the Open or
// VerifiedListing that verified it returns (fs drops what the kernel
// cached of the lie). A front end reads Gen before answering and calls
// Forget when it no longer shows the path. A record that did not move is
// dropped; listings leave memory within Config.ListingMemory, but what
// was handed out stays until Forget, so eviction never moves a
// generation. nixdaemon asks only for verified answers and needs none of
// this.
//
// # Verification is a change of type
//
// A verified listing is a *trust.Listing, which only trust makes: from a
// NAR whose size, NarHash (and content address) matched (fetch calls
// VerifyNAR), from a chunk index signed by a trusted key that matches the
// narinfo (VerifyIndex), or from the listing.json of an entry committed
// after VerifyNAR (Recorded). What chooses bytes takes that type: the
// verified side of pathstate, content's blobs and chunked reads, a
// File's node. A .ls or a NAR header is a *nar.Listing or *nar.Node and
// only ever answers metadata.
//
// # Call direction
//
// Calls go down: remote → upstream, fetch, content, pathstate → trust →
// the leaves, and no part imports package remote. The four parts of one
// level never import each other (the core's layering test checks it, as
// it checks that fs imports only remote and nar): what content needs of a cache (the download,
// its source of chunks, its counters) it is handed as values (Fetch,
// Origin, Counters) by the core, and fetch gets a body, a trust.Path and a
// pending entry. The one call up is a subscription: a front end's
// Subscribe function, which must not block, runs on the goroutine that
// verified. It replaces a hook after which the mount fetched the listing
// again.
//
// # Where the sketch was adapted
//
//   - Per-path state is one pathstate.Table per upstream cache, not one
//     for the core: a .ls of one cache must never answer for a path
//     another cache resolved (that cache may declare chunk indexes,
//     which forbids unsigned metadata: class 2), and listings were per
//     cache before. Subscribe fans out over the tables; Gen and Forget go
//     to the path's cache.
//   - Flights: a download is shared by content (trust.EntryKey), across
//     paths and caches, but its failure is remembered under the cache's
//     own key, and a caller that waited for a download of another cache
//     that failed tries once more from its own: one cache's bad narinfo or
//     object never fails a path another cache has right.
//   - A blob of an indexed path, one per local cache, reads from its first
//     opener's cache and moves to the latest other opener's on a
//     transport error; chunks are checked against the signed index, so
//     the source never chooses bytes. It keeps its first opener's Ranges.
//   - Request counting is a decorator of the backend told the kind by its
//     caller (upstream.Counted.For): no kind guessed from a key's suffix,
//     no type assertion through the wrapper; a parallel download counts
//     one NAR GET, its ranged requests as parts.
//   - A generation moves only on a contradiction, not on every
//     verification, and the core keeps a peeked directory root, so Root
//     asked again costs no request.
//   - File.ReadAt takes a context (it is not an io.ReaderAt): a read of an
//     indexed file may fetch chunks, within the caller's deadline.
//   - layout (the names of an entry's files) is a leaf of its own: fetch
//     writes them, content reads them.
//
// # Trust
//
// A narinfo is trusted when one of its signatures verifies under a trusted
// key, or when it is content-addressed and its CA field, name and
// references recompute to its store path (then the NAR must also hash to
// what the CA says), or when the caller turned signature checking off.
// Missing, malformed and untrusted narinfos are remembered for
// Config.NegativeTTL (an hour, like Nix).
//
// # Metadata and data
//
// A path's metadata comes from its verified listing when one is known,
// else from a verified chunk index, else (unsigned, metadata only) from
// the cache's .ls, refused unless it describes a NAR of exactly the
// signed NarSize and fits the listing budget, or from the NAR's first
// header (256 KiB at most) for Root. A store path that is a single
// symlink is verified before its target is shown.
//
// The NAR is fetched once per download, decompressed as a stream, checked
// against NarSize and NarHash (and the CA hash where that was the reason
// for trust), with nothing allowed after its last token, and only then
// committed to the local cache, keyed by NarHash. From then on its
// verified listing is the only answer: which file a reader opens is chosen
// in it, the open never follows a symlink or leaves the entry, and a .ls
// that disagreed is logged and counted. Nothing that failed verification
// is kept or served: the caller gets an error wrapping ErrCorrupt.
//
// A fetched NAR is kept as one blob file, plus a file of its own for each
// file of MaxRead bytes or more (the kernel reads those by passthrough);
// small files are read from the blob at their narOffset, through a warm
// descriptor while a walk opens them one after another.
//
// An indexed path (its narinfo names a chunk index signed by a trusted
// key) has a verified listing from the start; its files are read chunk by
// chunk with ranged GETs, each chunk's SHA-256 checked before any byte of
// it is served, into a sparse per-NAR blob. An index that fails any check
// is ignored as a whole: the path is read as from a stock cache. Open
// decides which, not its caller.
//
// # Time
//
// Every user-facing operation (a lookup, a listing, an open) answers
// within Config.Timeout, retries included. Work shared by several callers
// outlives the caller that started it, but not its own bound: a narinfo
// or .ls by Timeout, a NAR download by Timeout plus its NarSize at the
// backend's minimum rate, below which a body counts as stalled.
//
// # Offline
//
// Trusted narinfos are recorded in the local cache and used for
// Config.NarinfoTTL (30 days, like Nix) without asking the cache, and past
// it whenever the cache cannot be reached; the verified listing lives
// beside the NAR's entry. A restart with the caches down serves every
// path whose NAR is held locally; other paths fail within the timeout.
//
// # Errors
//
// Callers branch on ErrNotFound, ErrUntrusted, ErrCorrupt and
// ErrNotListable with errors.Is; ErrBug marks a panic that was caught and
// logged. Corrupt downloads are remembered for a minute, failures of the
// local disk with a backoff from 2 s to 2 min; everything else is a
// transient failure of the cache (network, server), not remembered.
package remote
