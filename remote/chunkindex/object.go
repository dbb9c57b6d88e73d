package chunkindex

import (
	"bytes"
	"fmt"
	"math"
	"strings"

	"github.com/narfs/narfs/remote/narinfo"
)

// Object layouts (doc.go): version 1 is the bare payload, signed by the
// narinfo's NarfsIndexSig lines; version 2 carries its signatures in a
// short uncompressed header before the payload.
const (
	magic2 = "narfs-index 2\n"
	// MaxHeader bounds a version 2 header, and MaxSigs its Sig lines:
	// a reader parses at most this much before it hashes the payload.
	MaxHeader = 4 << 10
	MaxSigs   = 8
)

// zstdMagic starts every zstd frame: a version 1 object.
var zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}

// Object is an index object split into its parts.
type Object struct {
	Version int      // 1 or 2
	Sigs    []string // version 2: the header's Sig lines
	Payload []byte   // what Decode reads and the signature's digest covers
}

// Seal returns the version 2 object of payload (an Encode result) with
// its signatures (SignPayload values).
func Seal(payload []byte, sigs []string) ([]byte, error) {
	if len(sigs) == 0 || len(sigs) > MaxSigs {
		return nil, fmt.Errorf("chunk index: %d signatures, want 1 to %d", len(sigs), MaxSigs)
	}
	var b bytes.Buffer
	b.WriteString(magic2)
	for _, s := range sigs {
		if s == "" || strings.ContainsAny(s, "\n\r") {
			return nil, fmt.Errorf("chunk index: bad signature %q", s)
		}
		fmt.Fprintf(&b, "Sig: %s\n", s)
	}
	b.WriteString("\n")
	if b.Len() > MaxHeader {
		return nil, fmt.Errorf("chunk index: header of %d bytes, limit %d", b.Len(), MaxHeader)
	}
	b.Write(payload)
	return b.Bytes(), nil
}

// Split parses an object's layout without decoding its payload: a
// version 2 header, or a version 1 object (a zstd frame). Anything else,
// including a later version, is ErrInvalid.
func Split(object []byte) (*Object, error) {
	if bytes.HasPrefix(object, zstdMagic) {
		return &Object{Version: 1, Payload: object}, nil
	}
	if !bytes.HasPrefix(object, []byte(magic2)) {
		if bytes.HasPrefix(object, []byte("narfs-index ")) {
			l, _, _ := bytes.Cut(object[:min(len(object), 32)], []byte("\n"))
			return nil, fmt.Errorf("%w: unknown layout %q (a newer narfs?)", ErrInvalid, l)
		}
		return nil, fmt.Errorf("%w: not an index object", ErrInvalid)
	}
	o := &Object{Version: 2}
	rest := object[len(magic2):]
	for {
		i := bytes.IndexByte(rest[:min(len(rest), MaxHeader)], '\n')
		if i < 0 || len(object)-len(rest)+i+1 > MaxHeader {
			return nil, fmt.Errorf("%w: header longer than %d bytes or truncated", ErrInvalid, MaxHeader)
		}
		line := string(rest[:i])
		rest = rest[i+1:]
		if line == "" {
			break
		}
		sig, ok := strings.CutPrefix(line, "Sig: ")
		if !ok || sig == "" {
			return nil, fmt.Errorf("%w: header line %q", ErrInvalid, line)
		}
		if len(o.Sigs) == MaxSigs {
			return nil, fmt.Errorf("%w: more than %d signatures", ErrInvalid, MaxSigs)
		}
		o.Sigs = append(o.Sigs, sig)
	}
	if len(o.Sigs) == 0 {
		return nil, fmt.Errorf("%w: no signature", ErrInvalid)
	}
	if !bytes.HasPrefix(rest, zstdMagic) {
		return nil, fmt.Errorf("%w: payload is not zstd", ErrInvalid)
	}
	o.Payload = rest
	return o, nil
}

// FingerprintV2 is what a version 2 signature covers: the path, its NAR,
// and the payload's SHA-256. Its prefix differs from a narinfo's ("1;")
// and from version 1's, so no signature stands for another.
func FingerprintV2(storePath string, ni *narinfo.NarInfo, payload []byte) string {
	return "narfs-index-2" + Fingerprint(storePath, ni.NarHash, ni.NarSize, Digest(payload))[len("narfs-index-1"):]
}

// SignPayload returns a version 2 Sig value for the payload of the
// narinfo's path.
func SignPayload(k narinfo.SecretKey, ni *narinfo.NarInfo, payload []byte) string {
	return k.SignFingerprint(FingerprintV2(absPath(ni), ni, payload))
}

// VerifyObject checks an object of either layout against the narinfo's
// path and NAR and returns its payload, ready for Decode, and the key
// that vouches for it: version 2 by its header's signatures, version 1
// by the narinfo's NarfsIndexSig lines. Call it before decoding anything.
func VerifyObject(ni *narinfo.NarInfo, object []byte, keys []narinfo.PublicKey) (*Object, narinfo.PublicKey, error) {
	o, err := Split(object)
	if err != nil {
		return nil, narinfo.PublicKey{}, err
	}
	if o.Version == 1 {
		k, err := Verify(ni, object, keys)
		return o, k, err
	}
	k, err := narinfo.VerifyFingerprint(FingerprintV2(absPath(ni), ni, o.Payload), o.Sigs, keys)
	if err != nil {
		return nil, narinfo.PublicKey{}, fmt.Errorf("chunk index of %s: %w", ni.StorePath, err)
	}
	return o, k, nil
}

// Bounds of what a path of narSize NAR bytes can need (doc.go, "Sizes"):
// chunks cut by Plan number at most 1 + narSize/MinChunkAverage, each
// line of the chunk table is at most chunkLine bytes, and the listing is
// at most 6 bytes of JSON per NAR byte plus listingSlack.
const (
	MinChunkAverage = 32 << 10
	chunkLine       = 4*20 + 64 + 1
	textHeader      = 8 << 10
	listingSlack    = 64 << 10
)

// MaxChunks bounds the chunk count of an index of a NAR of narSize bytes.
func MaxChunks(narSize int64) int64 {
	if narSize <= 0 {
		return 0
	}
	return 1 + narSize/MinChunkAverage
}

// TextBound bounds the decoded payload of an index of a NAR of narSize
// bytes (and MaxDecoded any).
func TextBound(narSize int64) int64 {
	if narSize <= 0 {
		return 0
	}
	if narSize > (math.MaxInt64-textHeader-listingSlack)/8 {
		return MaxDecoded
	}
	return min(MaxDecoded, textHeader+chunkLine*MaxChunks(narSize)+6*narSize+listingSlack)
}

// ObjectBound bounds the stored object of an index of a NAR of narSize
// bytes: its payload compresses its text (zstd expands incompressible
// input by a few bytes per 128 KiB block, maxStored), after a header.
func ObjectBound(narSize int64) int64 {
	t := TextBound(narSize)
	if t == 0 {
		return 0
	}
	return min(MaxObject, MaxHeader+maxStored(t))
}
