package chunkindex

import (
	"bytes"
	"errors"
	"runtime"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// zeroBombs are small zstd objects of 100 MiB of zeros: one frame that
// declares its size, and one streamed frame that does not (a decoder
// learns its size only by decoding it).
func zeroBombs(t testing.TB) map[string][]byte {
	t.Helper()
	zeros := make([]byte, 100<<20)
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest))
	if err != nil {
		t.Fatal(err)
	}
	declared := enc.EncodeAll(zeros, nil)
	var streamed bytes.Buffer
	enc.Reset(&streamed)
	if _, err := enc.Write(zeros); err != nil {
		t.Fatal(err)
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	return map[string][]byte{"declared": declared, "streamed": streamed.Bytes()}
}

// TestChunkBombDecodesNoMore: a chunk replaced by a small frame of 100 MiB
// of zeros is refused after decoding at most about its indexed size, not
// the whole frame (issue 19, class 5).
func TestChunkBombDecodesNoMore(t *testing.T) {
	b := build(t, "zstd")
	x, err := Decode(b.index)
	if err != nil {
		t.Fatal(err)
	}
	for name, bomb := range zeroBombs(t) {
		t.Run(name, func(t *testing.T) {
			c := x.Chunks[1]
			c.FileLen = int64(len(bomb))
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			_, err := x.DecodeChunk(nil, c, bomb)
			runtime.ReadMemStats(&after)
			if !errors.Is(err, ErrChunk) {
				t.Fatalf("bomb: %v, want ErrChunk", err)
			}
			// The chunk is ~1 MiB; a decoder may overshoot by a block
			// (128 KiB) and keep a few buffers, nowhere near 100 MiB.
			if got := after.TotalAlloc - before.TotalAlloc; got > 3*uint64(c.NarLen)+(4<<20) {
				t.Fatalf("decoding the bomb allocated %d MiB for a chunk of %d bytes", got>>20, c.NarLen)
			}
		})
	}
}
