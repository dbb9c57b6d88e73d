// Package trust decides what the core may believe: whether a narinfo may
// be shown (a trusted signature, a genuine content address, or no check
// when the user asked for none), what a path's NAR must hash to, and which
// listings are verified.
//
// A *Listing is the verified listing of a store path. Only this package
// makes one, and only from evidence: a NAR whose size, NarHash (and
// content address) matched (VerifyNAR), a chunk index signed by a trusted
// key that matches the narinfo (VerifyIndex), or the listing.json of a
// local entry committed after VerifyNAR (Recorded). Whatever holds a
// *Listing may let it choose bytes; an unverified *nar.Listing (a .ls, a
// NAR header) only ever describes metadata.
//
// The keys of local state (EntryKey, FlightKey, ChunkedKey) live here as
// well: each names exactly what was checked, so that content shared by
// paths and caches is shared only where the same checks vouch for it.
package trust
