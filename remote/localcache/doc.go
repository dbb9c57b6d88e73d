// Package localcache keeps verified, extracted NARs on the local disk,
// bounded in size, safe under eviction pressure and shared by several
// processes.
//
// # Layout (version 4)
//
// Everything lives under <cache-dir>/v4. Older layouts (v1, v2: NARs
// extracted into trees; v3: files of their own without a recorded hash)
// are renamed away and deleted in the background at Open.
//
//	nar/<key>/          one entry: a verified store path
//	    meta            its size in decimal, for accounting
//	    lock            empty; the flock(2) target (below)
//	    <name>          data and small files written with it, by the caller
//	tmp/<pid>.<n>/      an entry being written by process pid
//	tmp/evict.<pid>.<n> an evicted entry being deleted
//	records/<ns>/<name> small records (verified narinfos), written by rename
//
// What an entry holds is the caller's business; narfs (package remote)
// keeps a store path as its NAR: "blob", the uncompressed NAR as one
// file, with "f-<narOffset>" files of their own for large files (holes in
// the blob), each with "f-<narOffset>.sha256" (the hex SHA-256 of its
// contents and a newline, computed from the verified bytes), and
// "listing.json", the verified listing. A file of its own is served only
// once its contents match its .sha256 (a copy without one is not used),
// never on the strength of its size. A path with a
// signed chunk index keeps a sparse blob filled chunk by chunk (package
// blob). One file per NAR instead of one per NAR entry: creating a file
// costs ~290 µs on ext4, so a 16.7k-file NAR took seconds to extract, and
// deleting it thousands of unlinks.
//
// Keys and names are [0-9a-z._-], at most 128 bytes; the caller picks keys
// (a NarHash). An entry appears only by rename(2) of a fully written temp
// directory, so what it holds when it appears is complete: for a stock
// NAR, verified; a SIGKILL at any instant leaves at most a temp directory,
// which no reader ever opens and the next start deletes once its process
// is gone. Files added to a committed entry later (PublishData) appear by
// rename too; a chunked blob written in place records what it holds
// itself (package blob). Entries' mtimes carry LRU order across restarts.
//
// # Ownership, modes and symlinks
//
// What lies in the cache dir is served as verified, so only the user
// narfs runs as may have written it. Open refuses (ErrUnsafe, with the
// path and the fix) a cache dir, v4, nar/, tmp/, records/, a records
// namespace or an entry (its directory, meta and lock) that is not owned
// by that user or is writable by group or others, and any of them that
// is a symlink; every other file is checked the same way (fstat of the
// descriptor) when it is opened, so that a file given away or swapped
// after Open is not served either. <cache-dir> itself may be reached
// through symlinks (it is the path the user chose); below it nothing is
// ever followed: narfs holds descriptors of the cache dir and of v4's
// directories from Open on and reaches everything relative to them with
// O_NOFOLLOW (openat, renameat, unlinkat; deletions unlink a symlink,
// never what it points to), so what the path leads to later, or a link
// planted below it, changes nothing.
//
// narfs creates directories 0700 and files 0600, with or without
// --allow-other: other users never open these files. narfs serves their
// bytes itself, or with FUSE passthrough hands the kernel a descriptor it
// opened, through which the kernel reads with the credentials of narfs,
// whoever the reader is. A cache dir an older narfs made 0755 is
// accepted: no one else can write to it.
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
// Data files are opened relative to the entry's directory descriptor
// with O_NOFOLLOW and O_NONBLOCK (so a FIFO cannot block) and must be
// regular and pass the ownership check; names are single components. OpenFile, for callers that keep
// a tree under "root", resolves sub-paths with openat2(RESOLVE_BENEATH|
// RESOLVE_NO_SYMLINKS|RESOLVE_NO_MAGICLINKS|RESOLVE_NO_XDEV) (a
// component-by-component O_NOFOLLOW walk where openat2 is missing).
//
// # Several processes
//
// The processes sharing a cache dir (a mount, narfs prefetch) run as
// the same user. Usage and the cap are accounted per process: each
// counts the entries it committed or used. Entries another process
// commits are found by Acquire. Failures of the local disk are reported
// wrapping ErrLocal (ErrUnsafe matches it too).
package localcache
