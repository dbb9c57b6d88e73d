package storepath

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
)

// ContentAddress is a parsed narinfo CA field.
type ContentAddress struct {
	// Method is "text", "flat" (fixed:<algo>) or "nar" (fixed:r:<algo>).
	Method string
	Hash   Hash
}

// ParseCA parses the CA forms Nix 2.8 writes: "text:sha256:<digest>",
// "fixed:<algo>:<digest>" and "fixed:r:<algo>:<digest>", with the digest in
// any encoding ParseDigest accepts. HEAD's "fixed:git:" is rejected as
// unsupported.
func ParseCA(ca string) (ContentAddress, error) {
	prefix, rest, ok := strings.Cut(ca, ":")
	if !ok {
		return ContentAddress{}, fmt.Errorf("CA %q: no method: %w", ca, ErrInvalid)
	}
	var c ContentAddress
	switch prefix {
	case "text":
		c.Method = "text"
	case "fixed":
		c.Method = "flat"
		if r, ok := strings.CutPrefix(rest, "r:"); ok {
			c.Method, rest = "nar", r
		}
	default:
		return ContentAddress{}, fmt.Errorf("CA %q: unsupported method %q: %w", ca, prefix, ErrInvalid)
	}
	algo, digest, ok := strings.Cut(rest, ":")
	if !ok {
		return ContentAddress{}, fmt.Errorf("CA %q: no hash algorithm: %w", ca, ErrInvalid)
	}
	h, err := ParseDigest(algo, digest)
	if err != nil {
		return ContentAddress{}, fmt.Errorf("CA %q: %w", ca, err)
	}
	if c.Method == "text" && h.Algo != "sha256" {
		return ContentAddress{}, fmt.Errorf("CA %q: text hashes must be sha256: %w", ca, ErrInvalid)
	}
	c.Hash = h
	return c, nil
}

// String renders the CA the way Nix writes it (digest in nix32).
func (c ContentAddress) String() string {
	switch c.Method {
	case "text":
		return "text:" + c.Hash.String()
	case "nar":
		return "fixed:r:" + c.Hash.String()
	default:
		return "fixed:" + c.Hash.String()
	}
}

// FromCA recomputes the store path that Nix assigns to a content-addressed
// object in storeDir: Nix's makeTextPath / makeFixedOutputPath. refs are
// the references other than the object itself; selfRef says whether it also
// refers to itself. Objects that Nix cannot give references to (text with a
// self-reference, fixed outputs other than fixed:r:sha256 with any
// reference) are rejected, as Nix asserts they cannot exist.
func FromCA(storeDir, ca, name string, refs []StorePath, selfRef bool) (StorePath, error) {
	c, err := ParseCA(ca)
	if err != nil {
		return StorePath{}, err
	}
	if !ValidName(name) {
		return StorePath{}, fmt.Errorf("CA path name %q: %w", name, ErrInvalid)
	}
	switch {
	case c.Method == "text":
		if selfRef {
			return StorePath{}, fmt.Errorf("CA %q: text objects cannot refer to themselves: %w", ca, ErrInvalid)
		}
		return makeStorePath(makeType("text", storeDir, refs, false), c.Hash, storeDir, name), nil
	case c.Method == "nar" && c.Hash.Algo == "sha256":
		return makeStorePath(makeType("source", storeDir, refs, selfRef), c.Hash, storeDir, name), nil
	default:
		if len(refs) > 0 || selfRef {
			return StorePath{}, fmt.Errorf("CA %q: only fixed:r:sha256 objects can have references: %w", ca, ErrInvalid)
		}
		prefix := ""
		if c.Method == "nar" {
			prefix = "r:"
		}
		inner := sha256.Sum256([]byte("fixed:out:" + prefix + c.Hash.Base16() + ":"))
		return makeStorePath("output:out", Hash{Algo: "sha256", Digest: inner[:]}, storeDir, name), nil
	}
}

// makeType is Nix's Store::makeType: the type tag followed by every
// reference's full path in sorted order, then ":self".
func makeType(tag, storeDir string, refs []StorePath, selfRef bool) string {
	abs := make([]string, 0, len(refs))
	for _, r := range refs {
		abs = append(abs, r.Abs(storeDir))
	}
	slices.Sort(abs)
	abs = slices.Compact(abs) // Nix holds references in a set
	var b strings.Builder
	b.WriteString(tag)
	for _, a := range abs {
		b.WriteString(":")
		b.WriteString(a)
	}
	if selfRef {
		b.WriteString(":self")
	}
	return b.String()
}

// makeStorePath is Nix's Store::makeStorePath: the hash part is the sha256
// of a description string, folded to 160 bits.
func makeStorePath(typ string, h Hash, storeDir, name string) StorePath {
	desc := typ + ":" + h.Algo + ":" + hex.EncodeToString(h.Digest) + ":" + storeDir + ":" + name
	sum := sha256.Sum256([]byte(desc))
	return StorePath{Hash: EncodeNix32(compressHash(sum[:], 20)), Name: name}
}

// compressHash XOR-folds h into size bytes (Nix's compressHash).
func compressHash(h []byte, size int) []byte {
	out := make([]byte, size)
	for i, b := range h {
		out[i%size] ^= b
	}
	return out
}
