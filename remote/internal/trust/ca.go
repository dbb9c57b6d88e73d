package trust

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"hash"

	"github.com/narfs/narfs/remote/narinfo"
	"github.com/narfs/narfs/remote/storepath"
)

// ContentAddress is what a genuine CA field promises about the bytes:
// either the hash of the whole NAR (fixed:r:) or of the single regular file
// the path consists of (text: and flat fixed:).
type ContentAddress struct {
	recursive bool
	hash      storepath.Hash
}

// ParseContentAddress parses a narinfo's CA field.
func ParseContentAddress(ca string) (*ContentAddress, error) {
	c, err := storepath.ParseCA(ca)
	if err != nil {
		return nil, err
	}
	return &ContentAddress{recursive: c.Method == "nar", hash: c.Hash}, nil
}

// CheckNarHash rejects a CA whose promise contradicts the NarHash outright
// (fixed:r:sha256 is the NarHash itself); the other forms are checked
// against the bytes when the NAR is fetched.
func (c *ContentAddress) CheckNarHash(ni *narinfo.NarInfo) error {
	if c.recursive && c.hash.Algo == "sha256" && !c.hash.Equal(ni.NarHash) {
		return fmt.Errorf("%w: CA %s disagrees with NarHash %s", ErrCorrupt, ni.CA, ni.NarHash)
	}
	return nil
}

// NewHash returns a hash of the address's algorithm.
func (c *ContentAddress) NewHash() (hash.Hash, error) {
	switch c.hash.Algo {
	case "sha256":
		return sha256.New(), nil
	case "sha512":
		return sha512.New(), nil
	case "sha1":
		return sha1.New(), nil
	case "md5":
		return md5.New(), nil
	}
	return nil, fmt.Errorf("unsupported CA hash algorithm %q", c.hash.Algo)
}

// Recursive reports whether the address is the hash of the whole NAR
// (fixed:r:) rather than of the path's single file.
func (c *ContentAddress) Recursive() bool { return c.recursive }

// Digest is the hash the bytes must have.
func (c *ContentAddress) Digest() []byte { return c.hash.Digest }
