// Package nar reads and writes Nix ARchives (NAR) and their JSON listings.
//
// # Reading
//
// [Reader] is a streaming parser modelled on archive/tar: [Reader.Next]
// returns one [Header] per node in archive order, and [Reader.Read] returns
// the contents of the current regular file. It enforces every rule Nix
// enforces (the union over versions, see the spec §3.5): magic, zero
// padding, the fixed field order of Nix ≥ 2.25, an empty executable marker,
// entry names that are non-empty, not "." or "..", free of '/' and NUL, at
// most 255 bytes and strictly ascending in byte order, symlink targets of
// 1..4095 bytes without NUL, tags of at most 32 bytes, nesting depth below
// MaxDepth (1024: deeper than Nix ≥ 2.35 allows, as Nix 2.8 writes such
// trees) and sizes that fit int64. Whole paths are not bounded: a NAR may
// hold paths longer than PATH_MAX, which Nix cannot restore. Lengths are checked before anything is
// allocated, so hostile input costs at most one bounded buffer.
//
// Next returns io.EOF only when the root node is closed and the underlying
// reader is exhausted right there (it reads until (0, io.EOF) or data).
// Trailing data is rejected, as Nix rejects it: callers could not catch it
// themselves, because the Reader buffers its input and may already have
// consumed bytes past the end of the archive.
//
// # Errors
//
// Every malformed-input error wraps [ErrInvalid] and names the path and the
// byte offset of the offending token. A stream that ends early wraps both
// ErrInvalid and io.ErrUnexpectedEOF. Errors from the underlying reader are
// wrapped unchanged (not ErrInvalid), so callers can tell a broken archive
// from a broken transport. Errors are sticky. DecodeListing errors wrap
// [ErrInvalidListing], as do NARSize and Check errors; Listing.Find wraps
// fs.ErrNotExist or [ErrNotDirectory].
//
// # Writing
//
// [Dump] serialises a file, symlink or directory tree byte-identically to
// `nix-store --dump`. [Writer] is the underlying token emitter; it does not
// validate names or order, so tests can also build hostile archives with it.
//
// # Listings
//
// [Listing] is the `.ls` JSON (version 1) that `write-nar-listing=true`
// produces. [DecodeListing] is strict and byte-faithful (names are kept as
// raw bytes, as Nix 2.8 writes them); [Listing.Encode] writes exactly the
// bytes Nix 2.8 writes; [BuildListing] derives a listing from a NAR stream.
// The NAR encoding is canonical, so a listing fixes the exact size of its
// NAR and every file's narOffset: [Listing.NARSize] computes them and
// [Listing.Check] holds an unsigned listing against a signed NarSize.
package nar
