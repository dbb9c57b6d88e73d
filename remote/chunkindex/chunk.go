package chunkindex

import (
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/klauspost/compress/zstd"
)

// ErrChunk is wrapped when a chunk's stored bytes do not decode to the
// bytes its hash names.
var ErrChunk = errors.New("chunk does not match the index")

// DecodeChunk turns a chunk's stored bytes into its NAR bytes, appended
// to dst, and checks them against the chunk's length and hash. Nothing it
// returns without error is unverified.
func (x *Index) DecodeChunk(dst []byte, c Chunk, stored []byte) ([]byte, error) {
	if int64(len(stored)) != c.FileLen {
		return nil, fmt.Errorf("%w: %d stored bytes, want %d", ErrChunk, len(stored), c.FileLen)
	}
	start := len(dst)
	switch x.Compression {
	case "none":
		dst = append(dst, stored...)
	case "zstd":
		var err error
		if dst, err = decodeFrames(dst, stored, c.NarLen); err != nil {
			return nil, fmt.Errorf("%w: zstd: %w", ErrChunk, err)
		}
	default:
		return nil, fmt.Errorf("%w: compression %q", ErrChunk, x.Compression)
	}
	got := dst[start:]
	if int64(len(got)) != c.NarLen {
		return nil, fmt.Errorf("%w: decodes to %d bytes, want %d", ErrChunk, len(got), c.NarLen)
	}
	if sha256.Sum256(got) != c.SHA256 {
		return nil, fmt.Errorf("%w: SHA-256 mismatch at NAR offset %d", ErrChunk, c.NarOffset)
	}
	return dst, nil
}

// chunkDecoder is shared by every chunk decode (DecodeAll is safe for
// concurrent use and reuses its buffers): a decoder per chunk cost more
// memory and garbage than the chunk itself. WithDecodeAllCapLimit makes
// DecodeAll stop once its output would outgrow dst's capacity, which
// decodeFrames sets to the chunk's indexed size: a frame that does not
// declare its size (a stream) is decoded no further than that, plus at
// most one block.
var chunkDecoder = func() *zstd.Decoder {
	d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(4), zstd.WithDecoderMaxMemory(MaxChunk+1),
		zstd.WithDecoderMaxWindow(32<<20), zstd.WithDecodeAllCapLimit(true))
	if err != nil {
		panic(err) // only for invalid options
	}
	return d
}()

// decodeFrames decodes the frames of stored, appended to dst; output
// beyond limit (a frame claiming more than its chunk, a bomb) is an
// error found after decoding at most limit bytes and one block.
func decodeFrames(dst, stored []byte, limit int64) ([]byte, error) {
	if limit <= 0 || limit > MaxChunk {
		return nil, fmt.Errorf("chunk of %d bytes", limit)
	}
	start := len(dst)
	if int64(cap(dst)-start) < limit {
		dst = append(make([]byte, 0, int64(start)+limit), dst...)
	}
	// The capacity is the limit: DecodeAll refuses to grow past it.
	dst = dst[: start : int64(start)+limit]
	out, err := chunkDecoder.DecodeAll(stored, dst)
	if errors.Is(err, zstd.ErrDecoderSizeExceeded) || (err == nil && int64(len(out)-start) > limit) {
		return nil, fmt.Errorf("decodes to more than %d bytes", limit)
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}
