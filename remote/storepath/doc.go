// Package storepath handles the identifiers of a Nix store: nix32 text,
// typed hashes and store path base names, plus recomputing content-addressed
// store paths.
//
// # Design
//
// Everything here is pure and allocation-bounded, because its inputs come
// straight from an untrusted binary cache (narinfo lines, FUSE lookups).
// Parsers follow the strictest of Nix 2.8.0 and HEAD: a name that HEAD would
// reject is rejected even where 2.8.0 was lax, so narfs never exposes a path
// that current Nix cannot handle.
//
// # Errors
//
// Every parse failure wraps ErrInvalid, so callers can map it to ENOENT or a
// corrupt-narinfo error with errors.Is.
//
// # Content addressing
//
// FromCA mirrors Nix's makeTextPath and makeFixedOutputPath (store-api.cc):
// the store path of a content-addressed object is a function of its CA
// field, name and references, which lets a client trust such paths without
// a signature.
package storepath
