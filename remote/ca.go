package remote

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

// contentAddress is what a genuine CA field promises about the bytes:
// either the hash of the whole NAR (fixed:r:) or of the single regular file
// the path consists of (text: and flat fixed:).
type contentAddress struct {
	recursive bool
	hash      storepath.Hash
}

func parseContentAddress(ca string) (*contentAddress, error) {
	c, err := storepath.ParseCA(ca)
	if err != nil {
		return nil, err
	}
	return &contentAddress{recursive: c.Method == "nar", hash: c.Hash}, nil
}

// checkNarHash rejects a CA whose promise contradicts the NarHash outright
// (fixed:r:sha256 is the NarHash itself); the other forms are checked
// against the bytes when the NAR is fetched.
func (c *contentAddress) checkNarHash(ni *narinfo.NarInfo) error {
	if c.recursive && c.hash.Algo == "sha256" && !c.hash.Equal(ni.NarHash) {
		return fmt.Errorf("%w: CA %s disagrees with NarHash %s", ErrCorrupt, ni.CA, ni.NarHash)
	}
	return nil
}

func (c *contentAddress) newHash() (hash.Hash, error) {
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
