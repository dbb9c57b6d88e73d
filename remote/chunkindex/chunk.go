package chunkindex

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"

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

// decodeFrames decodes at most limit+1 bytes, so that a frame claiming
// more than its chunk stops early.
func decodeFrames(dst, stored []byte, limit int64) ([]byte, error) {
	d, err := zstd.NewReader(bytes.NewReader(stored), zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(MaxChunk+1), zstd.WithDecoderMaxWindow(32<<20), zstd.WithDecoderLowmem(true))
	if err != nil {
		return nil, err
	}
	defer d.Close()
	buf := bytes.NewBuffer(dst)
	_, err = io.Copy(buf, io.LimitReader(d, limit+1))
	return buf.Bytes(), err
}
