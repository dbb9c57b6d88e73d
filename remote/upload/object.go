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

// index returns the signed index object of the narinfo's path (layout 2:
// its signature in its own header) and the key to store it at, its alias.
// The narinfo's URL, Compression, FileHash and FileSize must already name
// the object; its NarfsIndex lines, if any (layout 1), are removed, so
// that it holds only keys Nix writes.
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
	payload, err := x.Encode()
	if err != nil {
		return nil, "", err
	}
	obj, err := sealIndex(ni, payload, key)
	if err != nil {
		return nil, "", err
	}
	return obj, chunkindex.AliasKey(ni.StorePath.Hash), nil
}

// sealIndex signs an index payload for the narinfo's path and drops the
// narinfo's layout-1 lines.
func sealIndex(ni *narinfo.NarInfo, payload []byte, key narinfo.SecretKey) ([]byte, error) {
	obj, err := chunkindex.Seal(payload, []string{chunkindex.SignPayload(key, ni, payload)})
	if err != nil {
		return nil, err
	}
	dropIndexLines(ni)
	return obj, nil
}

// dropIndexLines removes the layout-1 index lines, which readers that
// parse narinfos strictly (go-nix, nar-serve) refuse.
func dropIndexLines(ni *narinfo.NarInfo) {
	for _, k := range []string{chunkindex.KeyURL, chunkindex.KeySize, chunkindex.KeySig} {
		ni.Set(k)
	}
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
