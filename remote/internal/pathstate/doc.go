// Package pathstate is the one owner of what a cache knows of each store
// path's metadata: its unverified listing (.ls), its peeked root (a NAR
// header), its verified listing, and a generation per path that moves
// exactly when a verified listing contradicts metadata handed out before.
//
// A Table is one upstream cache's: the core keeps one per cache, because
// a .ls of one cache must never answer for a path another cache resolved
// (one that declares chunk indexes forbids unsigned metadata).
//
// Unverified metadata never chooses bytes: it is only answered to
// callers that asked for metadata (fs's lookups), and Handed records
// what they were shown, so that the verification that follows can tell
// them whether it contradicts it: SetVerified moves the generation and
// calls the subscribers (Subscribe) on its own goroutine, before it
// returns. A record the verification agreed with is dropped; one that
// moved stays until Forget (the caller no longer shows the path). A
// verified listing is never replaced by an unverified one. Listings live
// within a byte budget, least recently used out; what was handed
// survives eviction, so a generation never moves because of eviction.
//
// Lock order: mu and subsMu are never nested; subscribers run with
// neither held.
package pathstate
