// Package content is narfs's local disk, shared by every binary cache a
// mount reads: one Store per local cache dir, whatever cache a path was
// resolved through.
//
// It owns what is keyed by content, once per local cache: the entries of
// verified NARs and the downloads in flight that make them (Entry), the
// regular files opened in them (OpenSpan) and the warm descriptors that
// let small files' opens skip the syscalls (Warm, Share), the sparse
// blobs of indexed paths and the chunked reads over them (OpenBlob,
// OpenChunked, Fill), the own files of large files and their checks
// against the hash recorded when their bytes were verified.
//
// It knows no cache. What it needs of one comes from the caller: a Fetch
// (the download, its failure memo key, the cache's logger and Counters)
// for a stock path; an Origin (the cache's objects as a blob.Source, its
// Ranges, Counters, and what to record on a blob's first commit) for an
// indexed one. So two caches holding the same NAR share one entry, one
// download, one blob and one descriptor, while each keeps its own
// counters, logs and verdicts:
//
//   - A download is shared by content (trust.EntryKey), but its failure is
//     remembered under the cache's own key (Fetch.Failed). A caller that
//     waited for another cache's (or another path's) download that failed
//     tries once more with its own: one cache's bad narinfo or object
//     never fails a path another cache has right.
//   - A blob keeps the first opener's source; a request to it that fails
//     (not the caller's context) moves the blob to the latest other
//     opener's. Chunks are verified against the signed index, so the
//     source never chooses bytes. The blob keeps its first opener's
//     Ranges (what that cache does with range requests).
//
// Lock order (store.go holds it for the package): Chunked.mu →
// Store.blobsMu → blob.Blob's mu → localcache.Cache's mu. blobsMu guards
// only the blobs map and refcounts; no file is created, renamed or read
// under it. warmMu is never held across a localcache call.
// entryFlights.mu → localcache's mu. ownChecks.mu, Blob.raMu and
// source.mu are leaves.
//
// It imports no package above it (not remote): the layering test of the
// core checks that.
package content
