package chunkindex

import (
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"sort"

	"github.com/klauspost/compress/zstd"

	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/remote/storepath"
)

// Chunk sizes. On object storage a request costs a time to first byte
// worth ~2 MB of transfer (20 ms at 90 MB/s), so chunks of about a MiB
// keep a small file's fetch near one round trip while a large file costs
// one request per MiB at most, fewer where the reader coalesces.
const (
	// TargetChunk is the size small files are packed up to, and large
	// files are split into.
	TargetChunk = 1 << 20
	// SoloFile: a file at least this large starts a chunk of its own, so
	// reading it fetches none of its neighbours.
	SoloFile = 128 << 10
)

// Plan returns the chunk boundaries for a NAR: the NAR offsets at which
// chunks end, the last being narSize. Files of SoloFile bytes or more
// start and end chunks at their contents; small files and the NAR's
// structure are packed into chunks of about TargetChunk.
func Plan(l *nar.Listing, narSize int64) ([]int64, error) {
	if err := l.Check(narSize); err != nil {
		return nil, err
	}
	type span struct{ off, size int64 }
	var big []span
	var walk func(*nar.Node)
	walk = func(n *nar.Node) {
		switch n.Type {
		case nar.TypeRegular:
			if n.Size >= SoloFile && n.NarOffset > 0 {
				big = append(big, span{n.NarOffset, n.Size})
			}
		case nar.TypeDirectory:
			for _, e := range n.Entries {
				walk(e)
			}
		}
	}
	walk(l.Root)
	sort.Slice(big, func(i, j int) bool { return big[i].off < big[j].off })
	var ends []int64
	start := int64(0) // of the chunk being packed
	packTo := func(limit int64) {
		for limit-start > TargetChunk {
			start += TargetChunk
			ends = append(ends, start)
		}
		if limit > start {
			ends = append(ends, limit)
			start = limit
		}
	}
	for _, b := range big {
		// The packed stretch before the file ends where its contents
		// begin; the file is cut into TargetChunk pieces, the last
		// ending with it.
		packTo(b.off)
		packTo(b.off + b.size)
	}
	packTo(narSize)
	return ends, nil
}

// Builder writes a NAR object cut into chunks and records the chunk
// table. With Compression "zstd" every chunk is one independent zstd
// frame (so Nix, which reads concatenated frames as one stream, decodes
// the object as usual); with "none" the object is the NAR.
type Builder struct {
	w        io.Writer
	ends     []int64
	comp     string
	enc      *zstd.Encoder
	buf      []byte
	narOff   int64
	fileOff  int64
	fileHash hash.Hash
	chunks   []Chunk
	err      error
}

// NewBuilder returns a Builder writing to w the object of a NAR cut at
// ends (from Plan).
func NewBuilder(w io.Writer, ends []int64, compression string, level zstd.EncoderLevel) (*Builder, error) {
	b := &Builder{w: w, ends: ends, comp: compression, fileHash: sha256.New()}
	switch compression {
	case "none":
	case "zstd":
		enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(level), zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(min(8<<20, zstd.MaxWindowSize)))
		if err != nil {
			return nil, err
		}
		b.enc = enc
	default:
		return nil, fmt.Errorf("chunk index: compression %q cannot be indexed", compression)
	}
	return b, nil
}

// Write takes the next bytes of the NAR.
func (b *Builder) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 && b.err == nil {
		k := len(b.chunks)
		if k >= len(b.ends) {
			b.err = fmt.Errorf("chunk index: NAR is longer than planned")
			break
		}
		chunkStart := b.narOff
		if k > 0 {
			chunkStart = b.chunks[k-1].NarEnd()
		}
		want := b.ends[k] - chunkStart - int64(len(b.buf))
		take := int64(len(p))
		if take > want {
			take = want
		}
		b.buf = append(b.buf, p[:take]...)
		p = p[take:]
		if int64(len(b.buf)) == b.ends[k]-chunkStart {
			b.flush(chunkStart)
		}
	}
	if b.err != nil {
		return 0, b.err
	}
	return n, nil
}

func (b *Builder) flush(narOff int64) {
	c := Chunk{NarOffset: narOff, NarLen: int64(len(b.buf)), FileOffset: b.fileOff, SHA256: sha256.Sum256(b.buf)}
	out := b.buf
	if b.enc != nil {
		out = b.enc.EncodeAll(b.buf, nil)
	}
	if _, err := b.w.Write(out); err != nil {
		b.err = err
		return
	}
	b.fileHash.Write(out)
	c.FileLen = int64(len(out))
	b.fileOff += c.FileLen
	b.chunks = append(b.chunks, c)
	b.buf = b.buf[:0]
}

// Finish returns the chunk table and the object's size and hash, once
// the whole NAR was written.
func (b *Builder) Finish() ([]Chunk, int64, storepath.Hash, error) {
	if b.enc != nil {
		defer b.enc.Close()
	}
	if b.err != nil {
		return nil, 0, storepath.Hash{}, b.err
	}
	if len(b.chunks) != len(b.ends) || len(b.buf) != 0 {
		return nil, 0, storepath.Hash{}, fmt.Errorf("chunk index: NAR ended after %d of %d chunks", len(b.chunks), len(b.ends))
	}
	return b.chunks, b.fileOff, storepath.Hash{Algo: "sha256", Digest: b.fileHash.Sum(nil)}, nil
}
