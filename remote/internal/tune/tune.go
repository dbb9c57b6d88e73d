package tune

import "time"

// MaxSmallObject bounds narinfo and nix-cache-info bodies; real ones are
// well under a kilobyte.
const MaxSmallObject = 1 << 20

// MaxListing bounds a .ls download; a listing of a million files is
// ~100 MB. Tighter bounds follow from NarSize and Config.ListingMemory.
const MaxListing = 256 << 20

// CorruptMemo is how long a NAR (or a chunk of an indexed path) that
// failed verification is not fetched again: long enough that a reader
// retrying in a loop does not turn into a download loop, short enough
// that a repaired cache heals quickly.
const CorruptMemo = time.Minute

// Local failures (disk full, cache dir unwritable) back off from
// LocalMemoMin to LocalMemoMax: a diff -r over a full disk must not turn
// into thousands of downloads.
const (
	LocalMemoMin = 2 * time.Second
	LocalMemoMax = 2 * time.Minute
)

// MaxRead is the largest read the kernel (or any front end) sends in one
// request. It is also the size from which a file gets a file of its own:
// below it a file is served in one READ from the page cache; at or above
// it, the kernel can read an own file directly (FUSE passthrough needs
// the contents at offset 0). A NAR costs one file creation plus one per
// large file, where extracting it cost one per entry (~290 µs each on
// ext4).
const MaxRead = 1 << 20

// OwnFileMin: a file this large is stored in a file of its own (see
// MaxRead); smaller files are read from the NAR blob at their narOffset.
const OwnFileMin = MaxRead

// Each queue between fetch's stages: AheadDepth × AheadBuffer.
const (
	AheadDepth  = 8
	AheadBuffer = 256 << 10
)

// BlobLinger is how long an indexed path's open blob is kept after its
// last reader closed it, so that the next open finds it warm.
const BlobLinger = 30 * time.Second

// IndexShareNum/IndexShareDen: the share of a lookup's remaining deadline
// an index fetch may take; the rest is left for the stock way (narinfo
// already there, .ls or NAR) when the index does not come.
const (
	IndexShareNum = 1
	IndexShareDen = 2
)

// Index failures are remembered per path like other failed downloads: an
// index that does not verify for CorruptMemo, one the cache did not
// deliver for IndexMemoMin, doubling up to IndexMemoMax.
const (
	IndexMemoMin = 10 * time.Second
	IndexMemoMax = 5 * time.Minute
)

// DefaultIndexedWholeMax is Config.IndexedWholeMax's default: an indexed
// path whose stored object is at most this large is fetched whole, in the
// background, in parallel, from its first read on (each chunk still
// verified before it is served; readers wait only for their own chunks).
// Reads of such a path (a Python stdlib, a directory of libraries) tend
// to touch much of it, one file after another, and each miss would be a
// round trip; 16 parallel requests of at most 2 MiB cost about one.
// Larger paths (a Go toolchain) are read by ranges.
const DefaultIndexedWholeMax = 32 << 20

// MaxSmallReadahead bounds the small-file readahead: 8 chunks is ~8 MiB,
// a few round trips' worth of transfer on object storage.
const MaxSmallReadahead = 8

// Readahead bounds: reads that follow each other double the window from
// MinWindow up to MaxWindow, fetched in parallel requests of at most a
// few MiB.
const (
	MinWindow = 2 << 20
	MaxWindow = 16 << 20
)

// WholeFileMax: files up to this size are fetched whole at their first
// read (bin/go is ~15 MiB); larger ones by the reads' ranges and the
// sequential readahead, so random reads of a large file fetch about a
// chunk each.
const WholeFileMax = 16 << 20

// ExecWholeMax: executable files (programs, and shared libraries, which
// Nix stores executable) up to this size are fetched whole at their
// first read too. Their pages fault in out of order, one wait for a
// round trip each: a cold exec of the Go toolchain's compile (25 MiB)
// faulted 20 chunk requests in 0.57 s, fetched whole it took 0.14 s for
// 13% more bytes. 64 MiB of program is at most 32 requests of 2 MiB
// stored (blob's maxRun), in parallel: a couple of round trips' worth of
// transfer on object storage. A larger program is read by ranges like
// any large file.
const ExecWholeMax = 64 << 20

// Bounds of index aliases fetched ahead of their narinfo, before the
// NarSize that bounds an index (chunkindex.ObjectBound) is known: one
// larger than AliasMaxObject (an index of ~40k files) is fetched again,
// within that bound, once the narinfo is there; at most AliasMaxPending
// are held, each for AliasKeep unless a listing takes it sooner, so a
// hostile cache can pin at most their product (8 MiB) in memory, a fixed
// budget beside --listing-memory.
const (
	AliasMaxObject  = 512 << 10
	AliasMaxPending = 16
	AliasKeep       = 30 * time.Second
)

// A lookup that finds its alias still in flight waits for it as long
// again as it has run, but at least AliasWaitMin and at most AliasWaitMax:
// long enough for an index of a few MiB on a slow link, short enough that
// a cache (or CDN) hanging on the alias key costs a lookup a moment, not
// the whole --timeout, before the narinfo's own index is fetched.
const (
	AliasWaitMin   = 500 * time.Millisecond
	AliasWaitMax   = 2 * time.Second
	AliasSlowPause = time.Minute
)

// LookaheadJobs bounds the narinfo and listing lookups of references in
// flight per cache: Nix's http-connections default is 25, and its
// parallel narinfo queries are what make copying a closure fast
// (NixOS/nix#5118).
const LookaheadJobs = 16

// Lookahead backs off for LookaheadPauseMin, doubling up to
// LookaheadPauseMax while failures repeat, after a lookup failed for a
// reason other than the cache's answer (network, server): a cache that is
// down is asked by the readers who need a path, not by guesses.
const (
	LookaheadPauseMin = 5 * time.Second
	LookaheadPauseMax = 5 * time.Minute
)

// PrefetchWindow is the NAR bytes a prefetch of an indexed path waits for
// at a time; the next window's requests (at most 8 MiB each) are in
// flight meanwhile, so one path keeps a handful of requests busy, not one
// per chunk.
const PrefetchWindow = 32 << 20

// RootPeek bounds the compressed bytes read to learn a root node: the
// first NAR header is a few hundred bytes into the decompressed stream.
const RootPeek = 256 << 10

// DownFor is how long a cache that failed a lookup is skipped, as Nix
// disables a failing binary cache for a minute.
const DownFor = time.Minute

// ResolveWorkers bounds the narinfo fetches of one enumeration.
const ResolveWorkers = 16

// A warm blob is closed WarmLinger after its last reader. An open
// re-checks that the entry is still there whenever this process dropped
// any entry since the last check, and at least every WarmTouch (another
// process may have evicted it), which also keeps the entry recent in the
// cache's LRU order.
const (
	WarmLinger = 2 * time.Second
	WarmTouch  = time.Second
)

// QueueSeenMax bounds the keys a background queue remembers: ~100 bytes
// each.
const QueueSeenMax = 1 << 18

// MaxOwnChecks bounds the memory of own-file checks; past it they start
// over.
const MaxOwnChecks = 1 << 16

// Defaults of Config (see its fields for what each bounds).
const (
	DefaultCacheSize        = 10 << 30
	DefaultNegativeTTL      = time.Hour // as Nix's narinfo-cache-negative-ttl
	DefaultNarinfoCacheSize = 65536
	DefaultPrefetchJobs     = 4
	DefaultTimeout          = 30 * time.Second
	DefaultListingMemory    = 256 << 20
	DefaultNarinfoTTL       = 30 * 24 * time.Hour // as Nix's narinfo-cache-positive-ttl
)

// Local cache (localcache): TouchEvery bounds the mtime updates that
// record use on disk; OversizeLinger is how long an entry larger than the
// cap stays after its last use when nothing else makes room; HoldIdle is
// how long an unpinned entry keeps its flock; MaxRecord bounds a record
// (narinfos are well under a kilobyte; chunk indexes of large paths are
// records too).
const (
	TouchEvery     = time.Minute
	OversizeLinger = 10 * time.Second
	HoldIdle       = 2 * time.Second
	MaxRecord      = 64 << 20
)

// ListingShare: one listing (a .ls, a chunk index) may take at most
// 1/ListingShare of --listing-memory, so a few hostile listings cannot
// take all of it.
const ListingShare = 4

// Memory bounds of listings and indexes: a .ls can be larger than its
// NAR only by JSON's escaping of names, ListingJSONFactor bytes per byte
// at most, plus ListingSlack; decoding one takes up to
// ListingDecodeFactor times its JSON (IndexDecodeFactor times an index's
// payload) while it runs; a decoded index costs IndexChunkCost bytes per
// chunk beside its listing and object.
const (
	ListingJSONFactor   = 6
	ListingSlack        = 64 << 10
	ListingDecodeFactor = 3
	IndexDecodeFactor   = 16
	IndexChunkCost      = 64
)

// VerifiedIndexesMin is the least number of hash parts whose index
// verified that a cache remembers (NarinfoCacheSize when larger).
const VerifiedIndexesMin = 1 << 14

// ParallelProbe is the first read of a parallel NAR download, made
// before it is handed on, so that a server that cannot serve ranges is
// found out before anything downstream consumed a byte.
const ParallelProbe = 64 << 10

// ExtractBuffer is the buffer a fetch copies a NAR's files through.
const ExtractBuffer = 256 << 10

// PublishBuffer is the write buffer of a copy of an indexed path's large
// file into a file of its own.
const PublishBuffer = 1 << 20
