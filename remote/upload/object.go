package upload

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"os"

	"github.com/klauspost/compress/zstd"

	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/remote/chunkindex"
	"github.com/narfs/narfs/remote/narinfo"
	"github.com/narfs/narfs/remote/storepath"
)

// narDigest hashes and counts the bytes of a NAR as they pass.
type narDigest struct {
	h hash.Hash
	n int64
}

func newNarDigest() *narDigest { return &narDigest{h: sha256.New()} }

func (d *narDigest) Write(p []byte) (int, error) {
	d.h.Write(p)
	d.n += int64(len(p))
	return len(p), nil
}

func (d *narDigest) sum() storepath.Hash {
	return storepath.Hash{Algo: "sha256", Digest: d.h.Sum(nil)}
}

// check compares what passed with the NAR the narinfo (or the local
// store) promises.
func (d *narDigest) check(want storepath.Hash, wantSize int64) error {
	if got := d.sum(); d.n != wantSize || !got.Equal(want) {
		return fmt.Errorf("NAR is %d bytes with hash %s, want NarSize %d, NarHash %s", d.n, got, wantSize, want)
	}
	return nil
}

// scan reads a whole NAR, returning its listing; the bytes also go to
// d (and to tee, if not nil).
func scan(r io.Reader, d *narDigest, tee io.Writer) (*nar.Listing, error) {
	w := io.Writer(d)
	if tee != nil {
		w = io.MultiWriter(tee, d)
	}
	tr := io.TeeReader(r, w)
	l, err := nar.BuildListing(tr)
	if err != nil {
		return nil, err
	}
	// Whatever follows the NAR is counted (and fails the size check).
	if _, err := io.Copy(io.Discard, tr); err != nil {
		return nil, err
	}
	return l, nil
}

// chunked is a NAR object cut into chunks, and the rest of its index.
type chunked struct {
	chunks   []chunkindex.Chunk
	size     int64
	fileHash storepath.Hash
}

// cut writes the object of the NAR read from r (planned from l) to w and
// checks the bytes it read against the NAR's hash and size once more:
// the chunk hashes are computed from those bytes.
func cut(r io.Reader, w io.Writer, l *nar.Listing, narHash storepath.Hash, narSize int64, compression string, level zstd.EncoderLevel) (*chunked, error) {
	ends, err := chunkindex.Plan(l, narSize)
	if err != nil {
		return nil, err
	}
	b, err := chunkindex.NewBuilder(w, ends, compression, level)
	if err != nil {
		return nil, err
	}
	d := newNarDigest()
	if _, err := io.Copy(io.MultiWriter(b, d), r); err != nil {
		b.Finish()
		return nil, err
	}
	chunks, size, fh, err := b.Finish()
	if err != nil {
		return nil, err
	}
	if err := d.check(narHash, narSize); err != nil {
		return nil, fmt.Errorf("second read: %w", err)
	}
	return &chunked{chunks: chunks, size: size, fileHash: fh}, nil
}

// index returns the signed index object of the narinfo's path and the key
// to store it at, and sets the narinfo's NarfsIndex lines. The narinfo's
// URL, Compression, FileHash and FileSize must already name the object.
func (c *chunked) index(ni *narinfo.NarInfo, l *nar.Listing, key narinfo.SecretKey) ([]byte, string, error) {
	x := &chunkindex.Index{
		StorePath:   ni.StorePath.Abs(storeDirOf(ni)),
		NarHash:     ni.NarHash,
		NarSize:     ni.NarSize,
		URL:         ni.URL,
		Compression: ni.EffectiveCompression(),
		FileSize:    c.size,
		FileHash:    c.fileHash,
		Chunks:      c.chunks,
		Listing:     l,
	}
	obj, err := x.Encode()
	if err != nil {
		return nil, "", err
	}
	k := indexKey(ni.NarHash, chunkindex.Digest(obj))
	ni.Set(chunkindex.KeyURL, k)
	ni.Set(chunkindex.KeySize, fmt.Sprint(len(obj)))
	ni.Set(chunkindex.KeySig, chunkindex.Sign(key, ni, obj))
	return obj, k, nil
}

func storeDirOf(ni *narinfo.NarInfo) string {
	if ni.StoreDir == "" {
		return storepath.DefaultStoreDir
	}
	return ni.StoreDir
}

// encodeListing is the .ls document.
func encodeListing(l *nar.Listing) ([]byte, error) {
	var b bytes.Buffer
	if err := l.Encode(&b); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// tempFile is a temporary file removed on Close.
type tempFile struct{ *os.File }

func newTemp(dir, pattern string) (*tempFile, error) {
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return nil, err
	}
	return &tempFile{f}, nil
}

func (t *tempFile) Close() error {
	err := t.File.Close()
	os.Remove(t.Name())
	return err
}
