package chunkindex

import (
	"bytes"
	"crypto/sha256"
	"runtime"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/narfs/narfs/remote/narinfo"
)

// FuzzDecode: an index from a hostile cache never panics Decode, and
// whatever Decode accepts satisfies every invariant a reader relies on.
func FuzzDecode(f *testing.F) {
	for _, comp := range []string{"none", "zstd"} {
		b := build(f, comp)
		f.Add(b.index)
		sealed, err := Seal(b.index, []string{SignPayload(b.key, b.ni, b.index)})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(sealed)
	}
	// Hostile headers and sizes: an endless header, too many signatures,
	// a later layout, a payload that is no zstd, a bomb as payload, a
	// chunk count far beyond the text.
	f.Add([]byte("narfs-index 2\n" + strings.Repeat("Sig: a:b\n", MaxSigs+1) + "\n\x28\xb5\x2f\xfd"))
	f.Add([]byte("narfs-index 2\nSig: " + strings.Repeat("a", MaxHeader) + "\n\n\x28\xb5\x2f\xfd"))
	f.Add([]byte("narfs-index 3\nSig: a:b\n\n"))
	f.Add([]byte("narfs-index 2\nSig: a:b\n\nplain"))
	enc, _ := zstd.NewWriter(nil)
	f.Add(append([]byte("narfs-index 2\nSig: a:b\n\n"), enc.EncodeAll(make([]byte, 8<<20), nil)...))
	f.Add(enc.EncodeAll([]byte("narfs-index 1\nStorePath: /nix/store/ymydngcp0syr2bpvigprvim861rmkrvc-x\nNarHash: sha256:0000000000000000000000000000000000000000000000000000\nNarSize: 1\nURL: u\nCompression: none\nFileSize: 1\nFileHash: sha256:0000000000000000000000000000000000000000000000000000\nChunks: 9223372036854775807\nListing: 9223372036854775807\n\n"), nil))
	f.Fuzz(func(t *testing.T, object []byte) {
		if o, err := Split(object); err == nil {
			if o.Version == 2 && (len(o.Sigs) == 0 || len(o.Sigs) > MaxSigs || len(object)-len(o.Payload) > MaxHeader) {
				t.Fatalf("Split accepted a header beyond its bounds: %d signatures, %d bytes", len(o.Sigs), len(object)-len(o.Payload))
			}
		}
		x, err := Decode(object)
		if err != nil {
			return
		}
		if int64(len(x.Chunks)) > MaxChunks(x.NarSize) {
			t.Fatalf("%d chunks accepted for a NAR of %d bytes", len(x.Chunks), x.NarSize)
		}
		if err := x.check(); err != nil {
			t.Fatalf("Decode accepted an index that fails check: %v", err)
		}
		var off int64
		for _, c := range x.Chunks {
			if c.NarOffset != off || c.NarLen <= 0 || c.NarLen > MaxChunk {
				t.Fatal("bad chunk table accepted")
			}
			off += c.NarLen
		}
		if off != x.NarSize {
			t.Fatal("chunks do not cover the NAR")
		}
		first, last := x.Span(0, x.NarSize)
		if first != 0 || last != len(x.Chunks) {
			t.Fatal("Span of the whole NAR is not every chunk")
		}
		ni := &narinfo.NarInfo{}
		_ = x.Matches(ni)
	})
}

// FuzzDecodeChunk: stored bytes and a chunk length from a hostile cache
// never panic DecodeChunk, never make it return more or other bytes than
// the chunk names, and never make it decode far past the chunk's size.
func FuzzDecodeChunk(f *testing.F) {
	b := build(f, "zstd")
	x, err := Decode(b.index)
	if err != nil {
		f.Fatal(err)
	}
	for _, c := range x.Chunks[:2] {
		f.Add(b.object[c.FileOffset:c.FileOffset+c.FileLen], c.NarLen, false)
	}
	enc, _ := zstd.NewWriter(nil)
	var streamed bytes.Buffer
	enc.Reset(&streamed)
	enc.Write(make([]byte, 4<<20))
	enc.Close()
	f.Add(streamed.Bytes(), int64(1000), false)                        // a bomb without a declared size
	f.Add(enc.EncodeAll(make([]byte, 4<<20), nil), int64(1000), false) // one that declares it
	f.Add([]byte("not zstd"), int64(8), true)
	f.Add([]byte{}, int64(-1), false)
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd}, int64(MaxChunk+1), false)
	f.Fuzz(func(t *testing.T, stored []byte, narLen int64, none bool) {
		y := *x
		if none {
			y.Compression = "none"
		}
		c := Chunk{NarLen: narLen, FileLen: int64(len(stored))}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		out, err := y.DecodeChunk(nil, c, stored)
		runtime.ReadMemStats(&after)
		if err == nil && (int64(len(out)) != narLen || sha256.Sum256(out) != c.SHA256) {
			t.Fatalf("accepted %d bytes for a chunk of %d", len(out), narLen)
		}
		if narLen > 0 && narLen <= MaxChunk {
			if got := after.TotalAlloc - before.TotalAlloc; got > 4*uint64(narLen)+uint64(len(stored))+(8<<20) {
				t.Fatalf("decoding %d stored bytes for a chunk of %d allocated %d bytes", len(stored), narLen, got)
			}
		}
	})
}
