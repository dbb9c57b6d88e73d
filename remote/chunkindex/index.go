package chunkindex

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/klauspost/compress/zstd"

	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/remote/storepath"
)

// ErrInvalid is wrapped by every error about an index that does not
// decode or does not hold together.
var ErrInvalid = errors.New("invalid chunk index")

// Narinfo keys of a layout-1 index (doc.go); narfs no longer writes them.
const (
	KeyURL  = "NarfsIndex"
	KeySize = "NarfsIndexSize"
	KeySig  = "NarfsIndexSig"
)

// CacheInfoKey is the nix-cache-info line ("NarfsIndexAliases: 1") by
// which a cache says it keeps every index under AliasKey as well, so a
// reader may fetch it together with the narinfo.
const CacheInfoKey = "NarfsIndexAliases"

// AliasKey is where a cache written by narfs keeps the index of the path
// with hash part hash (layout 2; in layout-1 caches a copy of the object
// the narinfo names): a name known before the narinfo arrives. It is
// trusted only by its signature and checked against the narinfo, so a
// stale or foreign one is only ignored.
func AliasKey(hash string) string { return "index/" + hash + ".nidx" }

// MaxChunk bounds one chunk's NAR bytes: a reader fetches and verifies a
// chunk as a whole before serving any of it.
const MaxChunk = 64 << 20

// MaxObject bounds an index object's stored size and MaxDecoded its
// decompressed size; an index of a million files is ~150 MB decoded.
const (
	MaxObject  = 64 << 20
	MaxDecoded = 512 << 20
)

// Chunk is one verifiable piece of the NAR.
type Chunk struct {
	NarOffset, NarLen   int64 // range in the uncompressed NAR
	FileOffset, FileLen int64 // range in the stored object
	SHA256              [32]byte
}

// NarEnd is the offset just past the chunk in the NAR.
func (c Chunk) NarEnd() int64 { return c.NarOffset + c.NarLen }

// Index is a decoded chunk index. Decode checks that it holds together;
// Matches checks it against a narinfo.
type Index struct {
	StorePath   string // absolute
	NarHash     storepath.Hash
	NarSize     int64
	URL         string
	Compression string // "none" or "zstd"
	FileSize    int64
	FileHash    storepath.Hash
	Chunks      []Chunk
	Listing     *nar.Listing
}

// Span returns the chunks covering [off, off+n) of the NAR as the
// half-open index range [first, last).
func (x *Index) Span(off, n int64) (first, last int) {
	if n <= 0 || off < 0 || off >= x.NarSize {
		return 0, 0
	}
	end := x.NarSize
	if n < x.NarSize-off {
		end = off + n
	}
	first = sort.Search(len(x.Chunks), func(i int) bool { return x.Chunks[i].NarEnd() > off })
	last = sort.Search(len(x.Chunks), func(i int) bool { return x.Chunks[i].NarOffset >= end })
	return first, last
}

// Encode returns the index object: zstd of the text form.
func (x *Index) Encode() ([]byte, error) {
	if err := x.check(); err != nil {
		return nil, err
	}
	var ls bytes.Buffer
	if err := x.Listing.Encode(&ls); err != nil {
		return nil, fmt.Errorf("chunk index: listing: %w", err)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "narfs-index 1\nStorePath: %s\nNarHash: %s\nNarSize: %d\nURL: %s\nCompression: %s\nFileSize: %d\nFileHash: %s\nChunks: %d\nListing: %d\n\n",
		x.StorePath, x.NarHash, x.NarSize, x.URL, x.Compression, x.FileSize, x.FileHash, len(x.Chunks), ls.Len())
	for _, c := range x.Chunks {
		fmt.Fprintf(&b, "%d %d %d %d %s\n", c.NarOffset, c.NarLen, c.FileOffset, c.FileLen, hex.EncodeToString(c.SHA256[:]))
	}
	b.Write(ls.Bytes())
	if int64(b.Len()) > TextBound(x.NarSize) {
		return nil, fmt.Errorf("chunk index: %d bytes, more than a NAR of %d bytes can need (%d)", b.Len(), x.NarSize, TextBound(x.NarSize))
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBetterCompression))
	if err != nil {
		return nil, err
	}
	defer enc.Close()
	return enc.EncodeAll(b.Bytes(), nil), nil
}

// Digest is the SHA-256 of an index object, as the signature covers it.
func Digest(object []byte) storepath.Hash {
	d := sha256.Sum256(object)
	return storepath.Hash{Algo: "sha256", Digest: d[:]}
}

// Decode parses an index object (either layout: Split) and checks that
// it holds together. It does not check signatures (VerifyObject, before
// Decode) or the narinfo (Matches).
func Decode(object []byte) (*Index, error) {
	return decodeWithin(object, MaxDecoded)
}

// DecodeFor is Decode for an index of a NAR of narSize bytes (the
// narinfo's): it decompresses no more than TextBound(narSize).
func DecodeFor(object []byte, narSize int64) (*Index, error) {
	return decodeWithin(object, TextBound(narSize))
}

func decodeWithin(object []byte, limit int64) (*Index, error) {
	o, err := Split(object)
	if err != nil {
		return nil, err
	}
	x, err := decode(o.Payload, limit)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return x, nil
}

// decodedGuess is the capacity to decode object into, at most limit:
// the size its zstd frame header declares when it does (an index's
// writer knows it), else 16 times the object. Zeroing megabytes of
// buffer an index does not need took a third of its zstd time.
func decodedGuess(object []byte, limit int64) int64 {
	var h zstd.Header
	if h.Decode(object) == nil && h.HasFCS && h.FrameContentSize <= uint64(limit) {
		// The first frame's content: an object of more frames does not
		// fit, and decode decodes it again into a buffer of the limit.
		return int64(h.FrameContentSize)
	}
	return min(limit, 16*int64(len(object))+64<<10)
}

func decode(object []byte, limit int64) (*Index, error) {
	if len(object) > MaxObject {
		return nil, fmt.Errorf("%d bytes, limit %d", len(object), MaxObject)
	}
	if limit <= 0 {
		return nil, fmt.Errorf("no index fits a NAR of that size")
	}
	limit = min(limit, MaxDecoded)
	dec, err := zstd.NewReader(nil, zstd.WithDecoderMaxMemory(uint64(limit)), zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderMaxWindow(32<<20), zstd.WithDecodeAllCapLimit(true))
	if err != nil {
		return nil, err
	}
	defer dec.Close()
	// The capacity is the limit (WithDecodeAllCapLimit): a bomb stops
	// there, not at MaxDecoded. A text larger than the first guess gives
	// ErrDecoderSizeExceeded, and a second decode gets the limit.
	text, err := dec.DecodeAll(object, make([]byte, 0, decodedGuess(object, limit)))
	if errors.Is(err, zstd.ErrDecoderSizeExceeded) {
		// A buffer too small for an honest text: decode once more into
		// one of the limit (only after the cheap attempt failed).
		text, err = dec.DecodeAll(object, make([]byte, 0, limit))
	}
	if err != nil {
		return nil, fmt.Errorf("zstd (limit %d bytes): %w", limit, err)
	}
	if int64(len(text)) > limit {
		return nil, fmt.Errorf("decodes to %d bytes, limit %d", len(text), limit)
	}
	r := bufio.NewReader(bytes.NewReader(text))
	line := func() (string, error) {
		s, err := r.ReadString('\n')
		if err != nil {
			return "", fmt.Errorf("truncated header")
		}
		return s[:len(s)-1], nil
	}
	if l, err := line(); err != nil || l != "narfs-index 1" {
		return nil, fmt.Errorf("not a version 1 narfs index")
	}
	want := []string{"StorePath", "NarHash", "NarSize", "URL", "Compression", "FileSize", "FileHash", "Chunks", "Listing"}
	fields := map[string]string{}
	for _, k := range want {
		l, err := line()
		if err != nil {
			return nil, err
		}
		key, value, ok := strings.Cut(l, ": ")
		if !ok || key != k {
			return nil, fmt.Errorf("want field %s, got %q", k, l)
		}
		fields[k] = value
	}
	if l, err := line(); err != nil || l != "" {
		return nil, fmt.Errorf("no empty line after the header")
	}
	x := &Index{StorePath: fields["StorePath"], URL: fields["URL"], Compression: fields["Compression"]}
	if x.NarHash, err = storepath.ParseHash(fields["NarHash"]); err != nil {
		return nil, err
	}
	if x.FileHash, err = storepath.ParseHash(fields["FileHash"]); err != nil {
		return nil, err
	}
	var nchunks, lsLen int64
	for _, f := range []struct {
		k string
		v *int64
	}{{"NarSize", &x.NarSize}, {"FileSize", &x.FileSize}, {"Chunks", &nchunks}, {"Listing", &lsLen}} {
		if *f.v, err = parseUint(fields[f.k]); err != nil {
			return nil, fmt.Errorf("%s: %w", f.k, err)
		}
	}
	// Bounds of the format (doc.go, "Sizes"): what a NAR of this size
	// can need, so the index is no larger than its path calls for.
	if nchunks > MaxChunks(x.NarSize) || int64(len(text)) > TextBound(x.NarSize) {
		return nil, fmt.Errorf("%d chunks in %d bytes exceed the bounds of a NAR of %d bytes (%d, %d)",
			nchunks, len(text), x.NarSize, MaxChunks(x.NarSize), TextBound(x.NarSize))
	}
	// Every chunk line takes at least 73 bytes: the count cannot exceed
	// what the text holds, so it cannot make us allocate more than that.
	if nchunks > int64(len(text))/73 {
		return nil, fmt.Errorf("%d chunks do not fit in %d bytes", nchunks, len(text))
	}
	x.Chunks = make([]Chunk, 0, nchunks)
	for i := int64(0); i < nchunks; i++ {
		l, err := line()
		if err != nil {
			return nil, fmt.Errorf("chunk %d: %w", i, err)
		}
		c, err := parseChunk(l)
		if err != nil {
			return nil, fmt.Errorf("chunk %d: %w", i, err)
		}
		x.Chunks = append(x.Chunks, c)
	}
	rest, _ := io.ReadAll(r)
	if int64(len(rest)) != lsLen {
		return nil, fmt.Errorf("listing is %d bytes, header says %d", len(rest), lsLen)
	}
	if x.Listing, err = nar.DecodeListing(rest); err != nil {
		return nil, err
	}
	if err := x.check(); err != nil {
		return nil, err
	}
	return x, nil
}

func parseUint(s string) (int64, error) {
	if s == "" || strings.TrimLeft(s, "0123456789") != "" || (len(s) > 1 && s[0] == '0') {
		return 0, fmt.Errorf("%q is not a decimal number", s)
	}
	return strconv.ParseInt(s, 10, 64)
}

func parseChunk(l string) (Chunk, error) {
	f := strings.Split(l, " ")
	if len(f) != 5 {
		return Chunk{}, fmt.Errorf("want 5 fields, got %q", l)
	}
	var c Chunk
	for i, p := range []*int64{&c.NarOffset, &c.NarLen, &c.FileOffset, &c.FileLen} {
		v, err := parseUint(f[i])
		if err != nil {
			return Chunk{}, err
		}
		*p = v
	}
	if len(f[4]) != 64 || strings.ToLower(f[4]) != f[4] {
		return Chunk{}, fmt.Errorf("hash %q is not 64 lower-case hex digits", f[4])
	}
	if _, err := hex.Decode(c.SHA256[:], []byte(f[4])); err != nil {
		return Chunk{}, fmt.Errorf("hash %q: %w", f[4], err)
	}
	return c, nil
}

// check is everything an index must satisfy on its own.
func (x *Index) check() error {
	if _, err := storepath.ParseAbs(path.Dir(x.StorePath), x.StorePath); err != nil {
		return fmt.Errorf("store path %q: %w", x.StorePath, err)
	}
	if x.NarHash.Algo != "sha256" || x.FileHash.Algo != "sha256" {
		return fmt.Errorf("NarHash and FileHash must be sha256")
	}
	if x.URL == "" || strings.ContainsAny(x.URL, "\n\r") {
		return fmt.Errorf("bad URL %q", x.URL)
	}
	if x.Compression != "none" && x.Compression != "zstd" {
		return fmt.Errorf("compression %q: only none and zstd can be indexed", x.Compression)
	}
	if x.NarSize <= 0 || x.FileSize <= 0 {
		return fmt.Errorf("NarSize %d and FileSize %d must be positive", x.NarSize, x.FileSize)
	}
	if len(x.Chunks) == 0 || int64(len(x.Chunks)) > MaxChunks(x.NarSize) {
		return fmt.Errorf("%d chunks, want 1 to %d for a NAR of %d bytes", len(x.Chunks), MaxChunks(x.NarSize), x.NarSize)
	}
	var narOff, fileOff int64
	for i, c := range x.Chunks {
		if c.NarOffset != narOff || c.FileOffset != fileOff {
			return fmt.Errorf("chunk %d at NAR %d, object %d: want %d, %d (gap or overlap)", i, c.NarOffset, c.FileOffset, narOff, fileOff)
		}
		// A zstd frame of incompressible data is its bytes plus a few
		// per 128 KiB block: a chunk stored much larger than it decodes
		// to is no honest frame, and a reader buffers it whole.
		if c.NarLen <= 0 || c.NarLen > MaxChunk || c.FileLen <= 0 || c.FileLen > maxStored(c.NarLen) {
			return fmt.Errorf("chunk %d: lengths %d, %d out of range", i, c.NarLen, c.FileLen)
		}
		if x.Compression == "none" && (c.FileOffset != c.NarOffset || c.FileLen != c.NarLen) {
			return fmt.Errorf("chunk %d: uncompressed object ranges must equal NAR ranges", i)
		}
		if narOff > math.MaxInt64-c.NarLen || fileOff > math.MaxInt64-c.FileLen {
			return fmt.Errorf("chunk %d: offsets overflow", i)
		}
		narOff += c.NarLen
		fileOff += c.FileLen
	}
	if narOff != x.NarSize || fileOff != x.FileSize {
		return fmt.Errorf("chunks cover %d NAR and %d object bytes, want %d and %d", narOff, fileOff, x.NarSize, x.FileSize)
	}
	if x.Listing == nil || x.Listing.Root == nil {
		return fmt.Errorf("no listing")
	}
	if err := x.Listing.Check(x.NarSize); err != nil {
		return err
	}
	if !offsetsKnown(x.Listing.Root) {
		return fmt.Errorf("listing: file %q has no narOffset", missingOffset(x.Listing.Root, ""))
	}
	return nil
}

// offsetsKnown reports whether every regular file has a narOffset
// (Check accepts 0 as unknown; an index must know them all). It builds
// no names: missingOffset does, only once one is missing.
func offsetsKnown(n *nar.Node) bool {
	switch n.Type {
	case nar.TypeRegular:
		return n.NarOffset != 0
	case nar.TypeDirectory:
		for _, e := range n.Entries {
			if !offsetsKnown(e) {
				return false
			}
		}
	}
	return true
}

// maxStored bounds a chunk's stored size by its NAR size (MaxChunk at
// most, so this cannot overflow).
func maxStored(narLen int64) int64 { return narLen + narLen/128 + 4096 }

// missingOffset returns the path of a regular file without a narOffset.
func missingOffset(n *nar.Node, p string) string {
	switch n.Type {
	case nar.TypeRegular:
		if n.NarOffset == 0 {
			return "/" + p
		}
	case nar.TypeDirectory:
		for name, e := range n.Entries {
			if p := missingOffset(e, p+"/"+name); p != "" {
				return p
			}
		}
	}
	return ""
}
