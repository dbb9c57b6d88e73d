// Package upstream is one binary cache as the core sees it: its backend
// (with progress deadlines when Options.ProgressDeadlines, and a
// counting decorator), the trust verdicts of its narinfos (memory, local
// records, negative memo, one shared request per hash), the small
// unverified objects it serves (.ls listings, a NAR's first header), its
// chunk indexes (fetched, verified by trust.VerifyIndex, recorded, their
// failures memoized, fetched ahead under alias names), the body of its
// NARs (one GET or parallel ranged parts), its liveness (skipped for a
// while after a failure) and the enumeration of its narinfos.
//
// What it does not own: listings and what callers were shown (the core's
// per-cache state), extracted entries and blobs (the local content part),
// NAR verification and extraction (fetch). The local cache is used only
// for records (narinfos, indexes) under the cache's own namespace.
//
// Counting: every request goes through a view of the backend chosen by
// its caller for the kind of object it asks for (Counted.For), so the
// metrics never guess a kind from a key's name; a parallel download
// counts once as a NAR GET and its ranged requests as parts.
//
// Why this shape: everything here is per cache and network-facing, so one
// cache's bad narinfo, index or outage stays its own; the class-2 rule
// (remote/downgrade.go) reads IndexesDeclared and IndexRecorded from here
// and the listings from the core. Cache is at the core's limit of 35
// methods: if it grows, the index aliases become a type of their own.
//
// Lock order: the mutexes here (downState.mu, indexAliases.mu, the memos')
// are leaves: none is held while another is taken, nor across I/O (down's
// logs its transitions under its lock, as before the split).
package upstream
