// Package localcache keeps verified, extracted NARs on the local disk,
// bounded in size, safe under eviction pressure and shared by several
// processes.
//
// # Layout (version 2)
//
// Everything lives under <cache-dir>/v2; other versions are left alone.
//
//	nar/<key>/          one entry: a verified store path
//	    root            the store path itself: a directory, file or symlink
//	    meta            its NarSize in decimal, for accounting
//	    lock            empty; the flock(2) target (below)
//	    <name>          small files written with it (listing.json)
//	tmp/<pid>.<n>/      an entry being written by process pid
//	tmp/evict.<pid>.<n> an evicted entry being deleted
//	records/<ns>/<name> small records (verified narinfos), written by rename
//
// Keys and names are [0-9a-z._-], at most 128 bytes; the caller picks keys
// (a NarHash). An entry appears only by rename(2) of a fully written temp
// directory after its NAR was verified, so its presence is the proof of
// verification: a SIGKILL at any instant leaves at most a temp directory,
// which no reader ever opens and the next start deletes once its process
// is gone. Entries' mtimes carry LRU order across restarts.
//
// # Pins and locking
//
// A reader pins an entry (Acquire) while it opens files in it; open
// descriptors keep working after the entry is deleted, so the pin need
// not outlive the open. While a process holds any pin on an entry it
// holds a shared flock on its lock file. The evictor, of any process,
// takes an exclusive non-blocking flock before renaming an entry away and
// keeps the entry if that fails, so no process deletes what another is
// opening. Within a process the pin count alone decides; eviction and
// commit of a key are serialised by one mutex, under which the rename-away
// happens (the slow delete comes after). Both Acquire and the evictor
// re-check after taking their flock that the lock file is the one of the
// entry now at the path (same device and inode): between the open and the
// lock, another process may have evicted that entry and published a new
// copy. A process keeps the flock of an entry for two seconds after its
// last pin is released, so the opens of a busy entry do not re-lock it;
// its own evictions release that hold first. Debris without a lock file
// found at Open is given one (O_EXCL, which fails on any live entry) and
// removed the same locked way.
//
// Entries larger than the whole cap are served while pinned and are the
// first victims once not: they go at the next eviction, or after they
// have been idle for a short while.
//
// # Opens
//
// Trees come from hostile NARs and hold symlinks anywhere. Files are
// opened with openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|
// RESOLVE_NO_MAGICLINKS|RESOLVE_NO_XDEV) relative to the entry's
// directory (a component-by-component O_NOFOLLOW walk where openat2 is
// missing), with O_NONBLOCK so a FIFO cannot block, and must be regular.
//
// # Several processes
//
// Usage and the cap are accounted per process: each counts the entries it
// committed or used. Entries another process commits are found by
// Acquire. Failures of the local disk are reported wrapping ErrLocal.
package localcache
