// Package fs is the thin go-fuse adapter that shows a remote.Core as a
// read-only /nix/store. Every node is an inode number plus a pointer to a
// resolved store path and a sub-path in it; what the path holds, all I/O,
// caching and verification live in package remote.
//
// # Caching
//
// Store paths are immutable, so entries and attributes are cached by the
// kernel for a day, page-cache contents survive opens (FOPEN_KEEP_CACHE)
// and symlink targets are cached. Negative lookups of the root are cached
// briefly by the kernel and for NegativeTTL by the store. When the kernel
// supports FUSE passthrough (Linux ≥ 6.9, as root) reads of files of 1 MiB
// and more go straight to the verified file in the local cache without a
// round trip through narfs; smaller ones cost one READ, then the page cache.
// Every open still costs an OPEN and a RELEASE (the kernel's no-open mode
// would spare both but allows no passthrough), so they are made cheap: a
// small file of a fetched path opens from its NAR's open blob (package
// remote), and a directory keeps its sorted entries for OPENDIR.
//
// # Verification
//
// Every answer (lookup, getattr, readdir, readlink) asks the core
// (Core.Root, Core.Lookup), which answers from metadata of the unsigned
// .ls (or the NAR's first header) until the NAR is verified, from the
// NAR's listing after; opens (Core.Open) always read what the verified
// listing says. The nodes of one store path share a storePathRef, which
// follows the path's generation in the core (Core.Gen, read before an
// answer; Core.Subscribe): when the verified listing contradicts an
// earlier answer, the kernel's entries, attributes, pages and cached
// directories of the path are invalidated (asynchronously: a LOOKUP
// holding a directory lock may be waiting for that very fetch), and the
// file being opened has its attributes dropped at once, so a read is
// never cut short by a lying size. When the kernel forgets the path's
// root, the core is told (Core.Forget).
//
// # Errors
//
// toErrno is the one place errors become errnos: missing or untrusted
// paths are ENOENT, an interrupted request EINTR, everything else
// (network, timeouts, the local disk) EIO after a log line saying why;
// the nodes answer ENOTDIR, EROFS themselves. A panic in a request is
// logged as a bug and answered EIO; the mount goes on.
//
// # Deadlocks
//
// The serving process never touches the mount itself (no exec, no stat of
// paths under it): the kernel would wait on a request only this process
// could answer.
package fs
