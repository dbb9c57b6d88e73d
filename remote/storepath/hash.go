package storepath

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
)

// Hash is a digest tagged with its algorithm: "md5", "sha1", "sha256" or
// "sha512".
type Hash struct {
	Algo   string
	Digest []byte
}

// hashSize is the digest length of each algorithm Nix knows.
var hashSize = map[string]int{
	"md5":    16,
	"sha1":   20,
	"sha256": 32,
	"sha512": 64,
}

// HashSize returns the digest length of algo, or 0 if Nix does not know it.
func HashSize(algo string) int { return hashSize[algo] }

// ParseHash parses the forms Nix's Hash::parseAnyPrefixed accepts:
// "<algo>:<digest>", where the digest is base16 (either case), nix32 or
// base64 as told by its length, and SRI "<algo>-<base64>".
func ParseHash(s string) (Hash, error) {
	if algo, rest, ok := strings.Cut(s, ":"); ok {
		return parseDigest(algo, rest, false)
	}
	if algo, rest, ok := strings.Cut(s, "-"); ok {
		return parseDigest(algo, rest, true)
	}
	return Hash{}, fmt.Errorf("hash %q: no algorithm prefix: %w", s, ErrInvalid)
}

// ParseDigest parses an unprefixed digest of a known algorithm, as Nix's
// parseNonSRIUnprefixed does for the hash inside a CA field.
func ParseDigest(algo, digest string) (Hash, error) {
	return parseDigest(algo, digest, false)
}

func parseDigest(algo, s string, sri bool) (Hash, error) {
	size := hashSize[algo]
	if size == 0 {
		return Hash{}, fmt.Errorf("hash %q: unknown algorithm %q: %w", s, algo, ErrInvalid)
	}
	var (
		d   []byte
		err error
	)
	switch {
	case !sri && len(s) == 2*size:
		d, err = hex.DecodeString(s)
	case !sri && len(s) == EncodedLen(size):
		d, err = DecodeNix32(s)
	case len(s) == base64.StdEncoding.EncodedLen(size):
		d, err = base64.StdEncoding.Strict().DecodeString(s)
	default:
		return Hash{}, fmt.Errorf("%s hash %q: length %d matches no encoding: %w", algo, s, len(s), ErrInvalid)
	}
	if err != nil {
		return Hash{}, fmt.Errorf("%s hash %q: %w (%v)", algo, s, ErrInvalid, err)
	}
	if len(d) != size {
		return Hash{}, fmt.Errorf("%s hash %q: %d bytes, want %d: %w", algo, s, len(d), size, ErrInvalid)
	}
	return Hash{Algo: algo, Digest: d}, nil
}

// String renders the hash the way Nix writes it in narinfos:
// "<algo>:<nix32>".
func (h Hash) String() string { return h.Algo + ":" + EncodeNix32(h.Digest) }

// Base16 renders "<algo>:<lowercase hex>", the form Nix hashes into store
// paths.
func (h Hash) Base16() string { return h.Algo + ":" + hex.EncodeToString(h.Digest) }

// SRI renders "<algo>-<base64>".
func (h Hash) SRI() string { return h.Algo + "-" + base64.StdEncoding.EncodeToString(h.Digest) }

// Equal reports whether both hashes have the same algorithm and digest.
func (h Hash) Equal(o Hash) bool { return h.Algo == o.Algo && bytes.Equal(h.Digest, o.Digest) }

// IsZero reports whether h is the zero Hash.
func (h Hash) IsZero() bool { return h.Algo == "" && len(h.Digest) == 0 }
