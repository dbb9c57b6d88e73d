// Package narinfo parses, writes, signs and verifies Nix binary cache
// metadata: `<hash>.narinfo` files and `nix-cache-info`.
//
// # Parsing
//
// Parse follows Nix's NarInfo constructor (nar-info.cc): the key runs to
// the first ':', the value starts after exactly ": " and ends at '\n', a
// last line without '\n' is corrupt, and unknown keys are ignored so that
// narinfos from newer Nix versions and third-party servers still load.
// Inputs larger than MaxSize are refused before any parsing, so a hostile
// cache cannot make the client allocate without bound. Fields are kept as
// written (Compression, CA, order of References and Sig) so Marshal
// reproduces a Nix-written narinfo byte for byte. Unlike Nix 2.8, Parse
// does not reject a CA value it cannot interpret (HEAD writes fixed:git:);
// VerifyCA does, so such a path simply needs a signature.
//
// # Trust
//
// A narinfo is trusted when one Sig verifies under a trusted key (Verify),
// or when it is content-addressed and its CA field, name and references
// recompute its store path (VerifyCA). Both report failures wrapping
// ErrUntrusted; malformed input wraps ErrInvalid.
package narinfo
