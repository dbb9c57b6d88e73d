package chunkindex

import (
	"fmt"
	"strconv"

	"github.com/narfs/narfs/remote/narinfo"
	"github.com/narfs/narfs/remote/storepath"
)

// Fingerprint is what an index signature covers. Its prefix differs from
// a narinfo fingerprint's ("1;"), so neither can stand for the other.
func Fingerprint(storePath string, narHash storepath.Hash, narSize int64, digest storepath.Hash) string {
	return "narfs-index-1;" + storePath + ";" + narHash.String() + ";" + strconv.FormatInt(narSize, 10) + ";" + digest.String()
}

// Sign returns a NarfsIndexSig value for the index object of the
// narinfo's path.
func Sign(k narinfo.SecretKey, ni *narinfo.NarInfo, object []byte) string {
	return k.SignFingerprint(Fingerprint(absPath(ni), ni.NarHash, ni.NarSize, Digest(object)))
}

// Verify checks the narinfo's NarfsIndexSig lines over object and
// returns the key that vouches for it. Call it before Decode.
func Verify(ni *narinfo.NarInfo, object []byte, keys []narinfo.PublicKey) (narinfo.PublicKey, error) {
	fp := Fingerprint(absPath(ni), ni.NarHash, ni.NarSize, Digest(object))
	k, err := narinfo.VerifyFingerprint(fp, ni.GetAll(KeySig), keys)
	if err != nil {
		return narinfo.PublicKey{}, fmt.Errorf("chunk index of %s: %w", ni.StorePath, err)
	}
	return k, nil
}

func absPath(ni *narinfo.NarInfo) string {
	dir := ni.StoreDir
	if dir == "" {
		dir = storepath.DefaultStoreDir
	}
	return ni.StorePath.Abs(dir)
}

// Matches checks that the index describes the narinfo's path, NAR and
// object.
func (x *Index) Matches(ni *narinfo.NarInfo) error {
	switch {
	case x.StorePath != absPath(ni):
		return fmt.Errorf("%w: index is of %s, narinfo of %s", ErrInvalid, x.StorePath, absPath(ni))
	case !x.NarHash.Equal(ni.NarHash) || x.NarSize != ni.NarSize:
		return fmt.Errorf("%w: index is of NAR %s (%d bytes), narinfo says %s (%d bytes)", ErrInvalid, x.NarHash, x.NarSize, ni.NarHash, ni.NarSize)
	case x.URL != ni.URL || x.Compression != ni.EffectiveCompression():
		return fmt.Errorf("%w: index describes object %s (%s), narinfo points at %s (%s)", ErrInvalid, x.URL, x.Compression, ni.URL, ni.EffectiveCompression())
	case ni.FileSize != 0 && ni.FileSize != x.FileSize:
		return fmt.Errorf("%w: index says FileSize %d, narinfo %d", ErrInvalid, x.FileSize, ni.FileSize)
	case ni.FileHash != nil && !ni.FileHash.Equal(x.FileHash):
		return fmt.Errorf("%w: index says FileHash %s, narinfo %s", ErrInvalid, x.FileHash, ni.FileHash)
	}
	return nil
}

// Location returns the narinfo's index object key and declared size, or
// ok false when the narinfo names no index (every stock cache).
func Location(ni *narinfo.NarInfo) (url string, size int64, ok bool, err error) {
	url, ok = ni.Get(KeyURL)
	if !ok {
		return "", 0, false, nil
	}
	s, _ := ni.Get(KeySize)
	size, err = parseUint(s)
	if err != nil || size <= 0 || size > MaxObject {
		return "", 0, true, fmt.Errorf("%w: %s %q", ErrInvalid, KeySize, s)
	}
	if url == "" {
		return "", 0, true, fmt.Errorf("%w: empty %s", ErrInvalid, KeyURL)
	}
	return url, size, true, nil
}
