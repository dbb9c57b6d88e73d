package trust

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"

	"github.com/narfs/narfs/remote/narinfo"
	"github.com/narfs/narfs/remote/storepath"
)

// ErrCorrupt: what the cache served failed verification (hash, size,
// malformed NAR or narinfo, listing disagreeing with the NAR).
var ErrCorrupt = errors.New("corrupt cache object")

// Path is a store path whose narinfo was judged trusted.
type Path struct {
	StorePath storepath.StorePath
	NarInfo   *narinfo.NarInfo
	// Why says why the path is trusted, for `narfs info` and logs:
	// "signature by KEY", "content-addressed", or "unchecked".
	Why string
	// CA, when the narinfo's CA field is genuine, is the hash the NAR
	// (or, for flat and text paths, the file) must have as well.
	CA *ContentAddress
}

// Judge decides whether a narinfo may be shown, and why. A CA field is
// checked whenever it is genuine, even on signed paths: then the bytes
// must match it as well.
func Judge(ni *narinfo.NarInfo, keys []narinfo.PublicKey, trustAll bool) (*Path, error) {
	var ca *ContentAddress
	caErr := ni.VerifyCA()
	if caErr == nil {
		c, err := ParseContentAddress(ni.CA)
		if err != nil {
			caErr = fmt.Errorf("%w: %v", narinfo.ErrUntrusted, err)
		} else if err := c.CheckNarHash(ni); err != nil {
			return nil, err
		} else {
			ca = c
		}
	}
	p := &Path{StorePath: ni.StorePath, NarInfo: ni, CA: ca}
	if trustAll {
		p.Why = "unchecked (signatures not required)"
		return p, nil
	}
	key, sigErr := ni.Verify(keys)
	if sigErr == nil {
		p.Why = "signature by " + key.Name
		return p, nil
	}
	if ca != nil {
		p.Why = "content-addressed (" + ni.CA + ")"
		return p, nil
	}
	if ni.CA != "" {
		return nil, fmt.Errorf("%w; CA %q does not match the store path: %v", sigErr, ni.CA, caErr)
	}
	return nil, sigErr
}

// EntryKey names a store path's local cache entry: its NarHash, so that
// paths (and caches) with the same contents share one download. Where
// trust rests on a content address that is not the NarHash itself (flat,
// text, other algorithms), that address is part of the key, since the
// entry proves it was checked too.
func EntryKey(p *Path) string {
	k := storepath.EncodeNix32(p.NarInfo.NarHash.Digest)
	if p.CA != nil && !(p.CA.recursive && p.CA.hash.Algo == "sha256") {
		d := sha256.Sum256([]byte(p.NarInfo.CA))
		k += "-ca-" + hex.EncodeToString(d[:16])
	}
	return k
}

// FlightKey identifies what one fetch downloads and what it is checked
// against: the URL and every narinfo field that decides the bytes or
// their verdict. Downloads and failure memos are keyed by it, so a bad
// narinfo of one path (a key-less twin with the same NarHash and a broken
// URL) never blocks another path.
func FlightKey(p *Path) string {
	ni := p.NarInfo
	h := sha256.New()
	for _, f := range []string{p.StorePath.String(), ni.URL, ni.Compression, ni.NarHash.String(), strconv.FormatInt(ni.NarSize, 10), ni.CA} {
		h.Write([]byte(f))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// ChunkedKey names an indexed path's blob entry: the NAR and the index it
// was cut by (another index of the same NAR has other chunks), v's.
func ChunkedKey(p *Path, v *Listing) string {
	return EntryKey(p) + "-x-" + storepath.EncodeNix32(v.objectSum.Digest)[:20]
}
