// Package nixdaemon serves Nix's worker ("daemon") protocol, read-only,
// over narfs's core: a Nix client pointed at its socket
// (`--store unix://PATH`, or `ssh-ng://` through a relay) sees the paths
// the mount serves as valid paths of a store, with the metadata of their
// trusted narinfos and their verified NARs, and every attempt to write
// or build refused through the protocol's error channel. It is a front
// end over the core, like package fs, and imports neither go-fuse nor fs.
//
// # Design
//
// Server speaks the protocol; Store is the small interface it needs from
// the core (validity and metadata of a path, a path from its hash part,
// a verified NAR). Core implements Store over remote.Core with the
// core's verified answers only: Resolve and ResolveHash for a path,
// VerifiedListing and Open for its NAR (whether a file is read by chunks
// or from the local NAR is the core's choice, not the daemon's). It never
// asks for unverified metadata (Root, Lookup), so it has no generation to
// watch. A Store may also be a Validator, whose cheaper validity check the
// operations that need no metadata use (Core's checks no signature again:
// the narinfo's trust verdict is kept with it).
//
// Each connection has its own goroutine and its own state; nothing is
// shared between connections but the Store, so a slow or hostile client
// holds only its own connection. A connection's reads are bounded in
// size (below) and in time: the handshake, each request once its
// operation number has arrived, and each write of a reply (NARs
// included) must progress within Server.RequestTimeout, else the
// connection is closed. Between requests a connection may idle for
// Server.IdleTimeout (default: forever, as with nix-daemon, because Nix
// keeps connections in a pool and does not reconnect when one was
// closed under it). Server.MaxConns bounds the connections served at
// once. A panic while serving a connection is logged with its stack and
// closes that connection only.
//
// An error the client should see (an invalid path, a store failure, a
// refused operation) is sent as a Nix error and the connection goes on,
// which needs the request's arguments read in full first: refused
// operations have their arguments, framed payloads included, read and
// discarded without being kept. Errors that leave the stream out of step
// (a bound exceeded, bad padding, an operation narfs cannot skip, a NAR
// that fails after it started) close the connection.
//
// # Bounds
//
// Lengths and counts from a client are checked before anything is
// allocated for them: a string the server keeps (a store path, an option
// name or value, a signature) is at most MaxString (64 KiB) bytes; a
// list or map has at most MaxList (2^18) elements; the strings of one
// request and 32 bytes per list element together at most MaxRequest
// (8 MiB, about 90,000 store paths). With at most Server.MaxConns (128)
// connections, the memory clients can make the server hold is bounded
// by MaxConns × (MaxRequest + 64 KiB of buffers), about 1 GiB; an idle
// connection holds its 64 KiB of buffers. A string the server only skips
// (the text of AddTextToStore, a derivation's environment) and framed
// payloads may be of any length: they are read in 1 MiB pieces into
// nothing, bounded in time only.
// Booleans must be 0 or 1 and padding must be zero (Nix checks padding
// too).
//
// # Framing
//
// Everything is a sequence of little-endian unsigned 64-bit words (u64):
//
//	u64       8 bytes, little-endian; booleans and enums are u64
//	string    u64 length, the bytes, zeros up to a multiple of 8 bytes
//	list      u64 count, then count elements; Nix's sets are sorted
//	map       u64 count, then count key/value pairs
//	optional  a string where "" is "none" (store paths, content
//	          addresses); or a u64 tag 0 (none) then the value (durations)
//	framed    (a stream) frames of a u64 length and that many bytes,
//	          unpadded, ending with an empty frame
//
// # Handshake
//
// From Nix's worker-protocol.hh, worker-protocol-connection.cc (2.26)
// and daemon.cc / remote-store.cc (2.8):
//
//	client → u64 WORKER_MAGIC_1 (0x6e697863)
//	daemon → u64 WORKER_MAGIC_2 (0x6478696f), u64 daemon version
//	client → u64 client version
//	the protocol version is the lower of the two (major 1 in the high
//	byte, minor in the low byte); narfs speaks up to 1.38 and refuses
//	clients below 1.21 or of another major version
//	1.38+:  client → list of feature names; daemon → its list (narfs: none)
//	1.14+:  client → u64 (obsolete CPU affinity flag; if non-zero a u64 CPU)
//	1.11+:  client → u64 (obsolete reserveSpace)
//	1.33+:  daemon → string daemon version ("narfs")
//	1.35+:  daemon → u64 whether it trusts the client: 0 unknown,
//	        1 trusted, 2 not trusted (narfs: 2; it applies no client
//	        setting and accepts no write)
//	daemon → the stderr channel, ended by STDERR_LAST
//
// Versions, from the sources at each release tag and checked with the
// real clients where noted: Nix 2.3 sends 1.21 (the oldest narfs
// serves), 2.4 1.32, 2.8–2.14 1.34 (Debian bookworm's 2.8, tested),
// 2.15–2.19 1.35 (the trust flag), 2.20–2.23 1.37 (CPU times in build
// results), 2.24–2.26 1.38 (the feature exchange, with an empty feature
// set; trixie's 2.26). Nix's development branch sends 1.39 and, like
// every client, settles on the daemon's lower version.
//
// # Requests and the stderr channel
//
// A request is a u64 operation number and its arguments. Before its
// reply, the daemon sends messages on the "stderr" channel, each a u64
// tag and its fields:
//
//	STDERR_NEXT            0x6f6c6d67  string: a log line
//	STDERR_READ            0x64617461  u64 n: the daemon wants up to n
//	                                   bytes (the client sends a string)
//	STDERR_WRITE           0x64617416  string: data for the client's sink
//	STDERR_LAST            0x616c7473  end of the channel: the reply follows
//	STDERR_ERROR           0x63787470  the operation failed (below)
//	STDERR_START_ACTIVITY  0x53545254  u64 id, u64 level, u64 type,
//	                                   string text, fields, u64 parent
//	STDERR_STOP_ACTIVITY   0x53544f50  u64 id
//	STDERR_RESULT          0x52534c54  u64 id, u64 type, fields
//
// (fields: a u64 count, each a u64 type, 0 then a u64, or 1 then a
// string.) narfs sends only STDERR_LAST and STDERR_ERROR. An error is,
// from 1.26 on, string "Error", u64 level (0, error), string "Error"
// (a name, no longer used), string message, u64 0 (no position), u64 0
// (no traces; each would be a u64 0 and a string); before 1.26, string
// message and u64 exit status. The client prints the message as
// "error: MESSAGE"; after STDERR_ERROR no reply follows.
//
// # Operations
//
// Store paths are absolute strings; a malformed one is answered with an
// error ("not in the Nix store", "not a valid store path"). Served:
//
//	19 SetOptions            12 u64 settings, then (1.12+) a map of
//	                         string overrides; read and ignored: nothing
//	                         a client may set changes a read-only answer
//	 1 IsValidPath           path → bool
//	31 QueryValidPaths       list of paths, (1.27+) u64 substitute → the
//	                         valid ones (narfs substitutes nothing itself)
//	26 QueryPathInfo         path → (1.17+) bool valid, and if valid:
//	                         deriver, NAR hash (base 16, no prefix),
//	                         references, u64 registration time, u64 NAR
//	                         size, (1.16+) bool ultimate, list of
//	                         signatures, content address; an invalid path
//	                         before 1.17 is the error "path 'P' is not
//	                         valid", words clients match on
//	 4 QueryPathHash, 5 QueryReferences, 18 QueryDeriver (obsolete)
//	                         path → hash, references, deriver
//	29 QueryPathFromHashPart string → path or ""
//	38 NarFromPath           path → STDERR_LAST, then the NAR itself,
//	                         unframed (the client parses it as a NAR to
//	                         find its end); an error before the first
//	                         byte is the operation's error, one after it
//	                         closes the connection
//	 9 BuildPaths, 46 BuildPathsWithResults
//	                         derived paths ("path" or "drv!outputs"),
//	                         u64 mode → for valid paths in normal mode,
//	                         nothing to do: u64 1, or per path a result
//	                         AlreadyValid (status, message, times built,
//	                         non-deterministic, start, stop, 1.37+ two
//	                         absent CPU times, no outputs); `nix copy`
//	                         asks for this. Anything else needs a build
//	                         or a substitution and is refused
//	40 QueryMissing          derived paths → will build, will substitute,
//	                         unknown, u64 download size, u64 NAR size:
//	                         valid paths need nothing; any other path and
//	                         every derivation output are unknown (what
//	                         Nix says of what it can neither build nor
//	                         substitute)
//	10 EnsurePath            path → u64 1 if valid, else "not valid"
//
// Answered "none", honestly for a read-only store of binary cache paths:
// HasSubstitutes (3, false), QuerySubstitutablePathInfo (21, 0),
// QuerySubstitutablePaths (32), QuerySubstitutablePathInfos (30; before
// 1.22 a set of paths, since a map of path to content address),
// QueryRealisation (43; realisations of content-addressed derivations
// are not served), QueryReferrers (6) and QueryValidDerivers (33): a
// binary cache has no reverse index, so referrers are unknowable without
// reading every narinfo, and valid derivers would rest on the unsigned
// Deriver field; the empty set is Nix's answer for a path nothing
// refers to.
//
// Garbage-collector roots are no-ops, as narfs never deletes a path:
// AddTempRoot (11), AddIndirectRoot (12), SyncWithGC (13) → u64 1;
// FindRoots (14) → no roots; AddPermRoot (47, used by ssh-ng:// clients)
// → the root's path, though no symlink is made.
//
// Refused with the error "narfs serves this store read-only: operation
// OP is refused" (or a more precise one), with their arguments skipped
// so the connection stays usable: AddToStore (7; 1.25+: name, method,
// references, repair, framed dump), AddTextToStore (8), ExportPath (16),
// CollectGarbage (20), QueryDerivationOutputs (22), QueryAllValidPaths
// (23; narfs does not enumerate its caches), ImportPaths (27; its data
// is only sent on STDERR_READ, which never comes), the derivation
// queries 28 and 41, OptimiseStore (34), VerifyStore (35),
// BuildDerivation (36; a serialised derivation: outputs of name, path,
// hash algorithm and hash, input sources, platform, builder, arguments,
// environment), AddSignatures (37), AddToStoreNar (39; 1.23+: the path
// info, repair, dontCheckSigs, framed NAR), RegisterDrvOutput (42),
// AddMultipleToStore (44), AddBuildLog (45). Refused and closed, since
// their arguments cannot be found without parsing a NAR or answering
// STDERR_READ: AddToStore before 1.25, AddToStoreNar before 1.23, the
// removed QueryFailedPaths (24) and ClearFailedPaths (25), and any
// operation narfs does not know ("invalid operation N").
//
// # What Core reports
//
// A path is valid exactly when the mount would serve it: a trusted
// narinfo in some cache (remote.Core.Resolve; missing and
// untrusted paths are invalid, other failures are errors). NarHash,
// NarSize and References are signed (or recompute a content-addressed
// store path); Sigs lists only the narinfo's signatures that verify under
// a trusted key, so an unsigned field is never reported as a signature;
// CA only when it recomputes the store path; Deriver is the narinfo's,
// which no signature covers, as for any path Nix substitutes;
// RegistrationTime is 0 (binary caches record none); Ultimate is false.
// A path that resolves also has its listing looked up in the background
// (remote.Core.LookAhead): a client asking about a path is about to read
// it, as a build's inputs are read through the mount after their info.
// With signature checking off (Config.RequireSigs false, or a cache URL
// with trusted=true) every narinfo is valid and its metadata reported,
// as the mount serves it, but still no signature that does not verify.
// NarFromPath serialises the verified listing with the verified bytes of
// each file (the local copy of a stock path, checked chunks of an indexed
// one). NAR serialisation is canonical, so this is the cache's NAR byte
// for byte; it is hashed as it goes and its last 16 bytes (the closing
// token) are held back until it matches the signed NarHash and NarSize,
// so a client never receives a whole NAR that is not the signed one.
// A known limit: the verified listing comes from VerifiedListing, which
// for an indexed path whose verified listing is not in the core's memory
// fetches and verifies the whole NAR (the files are then read from it)
// rather than the signed chunk index.
//
// Note that Nix's unix:// store reads NARs from the store directory on
// the client's side (its `real` directory), not with NarFromPath: over a
// Unix socket NarFromPath is used by ssh-ng:// clients (the tests relay
// one to the socket) and by other implementations.
//
// # Sources
//
// Nix's src/libstore/worker-protocol.hh, worker-protocol.cc,
// worker-protocol-connection.cc, daemon.cc, remote-store.cc,
// derivations.cc and libutil/serialise.cc at tags 2.8.0 and 2.26.0; the
// protocol notes of tvix/snix (docs/src/nix-daemon) and nix-remote-rust;
// go-nix's pkg/wire for the framing. No code was copied.
package nixdaemon
