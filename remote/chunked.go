package remote

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/remote/blob"
	"github.com/narfs/narfs/remote/chunkindex"
	"github.com/narfs/narfs/remote/internal/layout"
	"github.com/narfs/narfs/remote/internal/trust"
	"github.com/narfs/narfs/remote/internal/tune"
	"github.com/narfs/narfs/remote/localcache"
)

// ErrNotIndexed: the path has no valid chunk index; read it whole.
var ErrNotIndexed = errors.New("no valid chunk index")

// blobRef is an indexed path's blob, open while readers use it.
type blobRef struct {
	key  string
	e    *localcache.Entry // pinned while open
	b    *blob.Blob
	refs int // protected by Store.blobsMu
	gen  int // bumps at each open, so a stale linger timer does nothing

	// Small files read one after another from nearby chunks (a package's
	// modules, a directory's headers) widen how many chunks after a small
	// file's own are fetched with it: one request instead of one each.
	raMu      sync.Mutex
	lastSmall int // chunk of the last small file's first read, -1 none
	smallRA   int // chunks fetched after a small file's own

	filling atomic.Bool // a small path's fill has been started
}

// DefaultIndexedWholeMax is Config.IndexedWholeMax's default (see
// tune.DefaultIndexedWholeMax for why).
const DefaultIndexedWholeMax = tune.DefaultIndexedWholeMax

// fill starts background requests for every missing chunk of a path
// stored in at most limit bytes, once per open blob, from chunk from on
// (where the first reader is: what it reads next is likely near), and
// waits for none. Their decoding takes at most Store.background's cores
// at once; a read that needs one of their chunks hurries it.
func (r *blobRef) fill(limit int64, from int) {
	x := r.b.Index()
	if x.FileSize > limit || r.filling.Swap(true) {
		return
	}
	r.b.Prefetch(0, len(x.Chunks), from)
}

// smallReadahead returns how many chunks after chunk c to fetch with a
// small file there, and records the read.
func (r *blobRef) smallReadahead(c int) int {
	r.raMu.Lock()
	defer r.raMu.Unlock()
	if r.lastSmall >= 0 && c >= r.lastSmall-1 && c <= r.lastSmall+r.smallRA+2 {
		r.smallRA = min(max(2*r.smallRA, 1), tune.MaxSmallReadahead)
	} else {
		r.smallRA = 1
	}
	r.lastSmall = c
	return r.smallRA
}

// openBlob returns the indexed path's blob, creating its local cache
// entry (an empty sparse blob) the first time.
func (s *Store) openBlob(v *trust.Listing, p *PathInfo) (*blobRef, error) {
	key := trust.ChunkedKey(p.v, v.Object())
	s.blobsMu.Lock()
	defer s.blobsMu.Unlock()
	if r, ok := s.blobs[key]; ok {
		r.refs++
		r.gen++
		return r, nil
	}
	e, err := s.cache.Acquire(key)
	if errors.Is(err, localcache.ErrMiss) {
		e, err = s.createBlob(key, v, p)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.Path, err)
	}
	bf, err := e.OpenData(blob.BlobFile)
	if err != nil {
		e.Release()
		return nil, fmt.Errorf("%s: %w", p.Path, err)
	}
	mf, err := e.OpenData(blob.MarksFile)
	if err != nil {
		bf.Close()
		e.Release()
		return nil, fmt.Errorf("%s: %w", p.Path, err)
	}
	if fi, err := bf.Stat(); err != nil || fi.Size() != v.Index().NarSize {
		bf.Close()
		mf.Close()
		e.Release()
		s.cache.Forget(key)
		return nil, fmt.Errorf("%s: %w: blob is not NarSize bytes", p.Path, localcache.ErrLocal)
	}
	var r *blobRef
	b, err := blob.New(s.bg, v.Index(), bf, mf, s.be, blob.Options{
		FetchDeadline: s.fetchDeadline,
		Logger:        s.log.With("path", p.Path.String()),
		OnFetch:       func(n int64) { s.stats.chunkBytes.Add(n) },
		Background:    s.background,
		Ranges:        &s.ranges,
		Hold:          func() func() { return s.holdBlob(r) },
	})
	if err != nil {
		bf.Close()
		mf.Close()
		e.Release()
		return nil, fmt.Errorf("%s: %w: %w", p.Path, localcache.ErrLocal, err)
	}
	r = &blobRef{key: key, e: e, b: b, refs: 1, lastSmall: -1}
	s.blobs[key] = r
	return r, nil
}

func (s *Store) createBlob(key string, v *trust.Listing, p *PathInfo) (*localcache.Entry, error) {
	pend, err := s.cache.Begin()
	if err != nil {
		return nil, err
	}
	defer pend.Abort()
	for _, f := range []struct {
		name string
		size int64
	}{{blob.BlobFile, v.Index().NarSize}, {blob.MarksFile, int64(len(v.Index().Chunks))}} {
		fh, err := pend.CreateFile(f.name)
		if err != nil {
			return nil, err
		}
		err = fh.Truncate(f.size)
		if cerr := fh.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %w", localcache.ErrLocal, err)
		}
	}
	if err := pend.WriteMeta(blob.IndexFile, v.Object()); err != nil {
		return nil, err
	}
	// Accounted at its full size: it may fill up to that.
	e, err := pend.Commit(key, v.Index().NarSize)
	if err == nil {
		s.recordNarinfo(p)
	}
	return e, err
}

func (s *Store) releaseBlob(r *blobRef) {
	s.blobsMu.Lock()
	defer s.blobsMu.Unlock()
	r.refs--
	if r.refs > 0 {
		return
	}
	gen := r.gen
	time.AfterFunc(tune.BlobLinger, func() {
		s.blobsMu.Lock()
		defer s.blobsMu.Unlock()
		if r.refs == 0 && r.gen == gen && s.blobs[r.key] == r {
			delete(s.blobs, r.key)
			r.b.Close()
			r.e.Release()
		}
	})
}

// ChunkedFile is an open regular file of an indexed path: reads fetch and
// verify only the chunks they cover.
type ChunkedFile struct {
	s    *Store
	p    *PathInfo
	ref  *blobRef
	node *nar.Node

	own *LocalFile // the file's own copy, when it had one at open

	mu      sync.Mutex
	nextOff int64 // where a sequential reader reads next
	window  int64 // readahead, grown while reads are sequential
	// wholeAsked: the whole file was asked for (wholeFileMax).
	wholeAsked bool
	closed     bool
}

// OpenChunked opens a regular file of a path that has a valid chunk
// index, without fetching anything but the index. Paths without one give
// ErrNotIndexed: use OpenVerified.
func (s *Store) OpenChunked(ctx context.Context, p *PathInfo, sub string) (*ChunkedFile, error) {
	// listing bounds its own wait (opContext); a known listing costs no
	// context, which matters when every open asks here first.
	kl, err := s.listing(ctx, p, false)
	if err != nil && !errors.Is(err, errNeedNAR) {
		return nil, err
	}
	if err != nil || kl.index() == nil {
		return nil, ErrNotIndexed
	}
	n, err := kl.Find(sub)
	if err != nil {
		return nil, fmt.Errorf("%s/%s: %w (%v)", p.Path, sub, ErrNotFound, err)
	}
	if n.Type != nar.TypeRegular {
		return nil, fmt.Errorf("%s/%s: %w (a %s, not a regular file)", p.Path, sub, ErrNotFound, n.Type)
	}
	r, err := s.openBlob(kl.v, p)
	if err != nil {
		return nil, err
	}
	f := &ChunkedFile{s: s, p: p, ref: r, node: n}
	if n.Size >= OwnFileMin {
		// Once complete, a large file has a file of its own, which the
		// kernel can read directly: served only once it matches the hash
		// recorded when it was copied from verified chunks.
		f.own = s.openOwn(r, p, n)
	}
	return f, nil
}

// Own returns the file's own copy in the local cache, verified when it
// was made, or nil while it has none: it is made once every chunk of a
// large file has been read. The ChunkedFile keeps ownership of it.
func (f *ChunkedFile) Own() *LocalFile { return f.own }

// publishOwn gives a completely fetched large file a file of its own.
func (s *Store) publishOwn(r *blobRef, p *PathInfo, n *nar.Node) {
	x := r.b.Index()
	first, last := x.Span(n.NarOffset, n.Size)
	if n.Size < OwnFileMin || !r.b.Complete(first, last) {
		return
	}
	select {
	case s.publishSem <- struct{}{}:
	default:
		return // busy: the next reader will
	}
	s.blobsMu.Lock()
	if s.bg.Err() != nil {
		s.blobsMu.Unlock()
		<-s.publishSem
		return // closing
	}
	r.refs++ // the blob stays open while it is copied from
	s.publishing.Add(1)
	s.blobsMu.Unlock()
	go func() {
		defer s.publishing.Done()
		defer func() { <-s.publishSem }()
		defer s.releaseBlob(r)
		if err := copyOwn(r, n); err != nil {
			s.log.Warn("giving a large file a file of its own", "path", p.Path.String(), "err", err)
		}
	}()
}

// openOwn opens the file of its own of a large file of an indexed path,
// or returns nil if it has none yet or the one there does not match its
// recorded hash (which is then removed, to be copied again).
func (s *Store) openOwn(r *blobRef, p *PathInfo, n *nar.Node) *LocalFile {
	name := layout.OwnFileName(n.NarOffset)
	lf, err := r.e.OpenRead(name)
	if err != nil {
		return nil
	}
	fi, err := lf.Stat()
	if err == nil && fi.Size() != n.Size {
		err = fmt.Errorf("%s: %w: %w: %d bytes, the signed listing says %d", name, localcache.ErrLocal, errOwnMismatch, fi.Size(), n.Size)
	}
	if err == nil {
		err = s.checkOwn(r.e, name, lf, n.Size)
	}
	if err == nil {
		return &LocalFile{File: lf, Size: n.Size}
	}
	lf.Close()
	if errors.Is(err, errOwnMismatch) {
		s.stats.corrupt.Add(1)
		s.log.Error("a large file's copy in the local cache does not match what was verified; not served, reading it by chunks", "path", p.Path.String(), "cache-dir", s.cfg.CacheDir, "err", err)
		r.e.RemoveData(name)
		r.e.RemoveData(layout.OwnSumName(name))
	}
	return nil
}

// copyOwn copies a complete large file of the blob into a file of its
// own, unless it has one, and then records the hash of the bytes it
// copied (each chunk verified on the way, CopyTo): a reader that finds
// the copy without its record does not use it.
func copyOwn(r *blobRef, n *nar.Node) error {
	name := layout.OwnFileName(n.NarOffset)
	if f, err := r.e.OpenRead(name); err == nil {
		f.Close()
		if _, err := r.e.ReadMeta(layout.OwnSumName(name)); err == nil {
			return nil
		}
		// A copy without its record (the copier stopped between the
		// two): copy again.
		if err := r.e.RemoveData(name); err != nil {
			return err
		}
	}
	sum := sha256.New()
	err := r.e.PublishData(name, func(f *os.File) error {
		bw := bufio.NewWriterSize(io.MultiWriter(f, sum), tune.PublishBuffer)
		if err := r.b.CopyTo(bw, n.NarOffset, n.Size); err != nil {
			return err
		}
		return bw.Flush()
	})
	if err != nil {
		return err
	}
	return r.e.PublishData(layout.OwnSumName(name), func(f *os.File) error {
		_, err := f.Write(layout.EncodeSum(sum.Sum(nil)))
		return err
	})
}

// Node is the file's node in the signed listing.
func (f *ChunkedFile) Node() *nar.Node { return f.node }

// ReadAt reads the file's bytes at off; every byte returned is from a
// chunk verified against the index.
func (f *ChunkedFile) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if off >= f.node.Size {
		return 0, io.EOF
	}
	n, err := f.ensure(ctx, off, int64(len(p)))
	if err != nil || n == 0 {
		return 0, err
	}
	// ensure verified the range; read it without checking again.
	got, err := f.ref.b.ReadVerified(p[:n], f.node.NarOffset+off)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", f.p.Path, err)
	}
	if int64(got) < n {
		return got, io.ErrUnexpectedEOF
	}
	return got, nil
}

// ReadCached reads the whole file into p (at least its size) if every
// chunk it spans is already verified in the local cache, and fetches
// nothing: ok is false when a chunk is missing or the read fails.
func (f *ChunkedFile) ReadCached(p []byte) (n int, ok bool) {
	size := f.node.Size
	if int64(len(p)) < size {
		return 0, false
	}
	first, last := f.ref.b.Index().Span(f.node.NarOffset, size)
	if !f.ref.b.Complete(first, last) {
		return 0, false
	}
	n, err := f.ref.b.ReadVerified(p[:size], f.node.NarOffset)
	return n, err == nil && int64(n) == size
}

// ensure fetches and verifies what a read of n bytes at off needs, with
// readahead, and returns how many bytes of the file it covers.
func (f *ChunkedFile) ensure(ctx context.Context, off, n int64) (int64, error) {
	size := f.node.Size
	if off >= size || n <= 0 {
		return 0, nil
	}
	if off < 0 {
		return 0, fmt.Errorf("negative offset")
	}
	if n > size-off {
		n = size - off
	}
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return 0, fmt.Errorf("read of a closed file")
	}
	// Kernel readahead sends reads slightly out of order: near the last
	// end counts as sequential.
	if d := off - f.nextOff; d > -tune.MaxRead && d < tune.MaxRead && off > 0 {
		f.window = min(max(2*f.window, tune.MinWindow), tune.MaxWindow)
	} else {
		f.window = 0
	}
	f.nextOff = max(f.nextOff, off+n)
	window := f.window
	whole := !f.wholeAsked && size <= tune.WholeFileMax
	f.wholeAsked = f.wholeAsked || whole
	f.mu.Unlock()
	ctx, cancel := f.s.opContext(ctx)
	defer cancel()
	x := f.ref.b.Index()
	base := f.node.NarOffset
	first, last := x.Span(base+off, n)
	_, raLast := x.Span(base+off, min(size-off, n+window))
	// The reader's own chunks are asked for first, then a small path's
	// fill, then the wait for the reader's chunks.
	if whole {
		// A file of moderate size is asked for whole at its first read:
		// a program's pages fault in out of order, and each would
		// otherwise cost a round trip. Small files also bring chunks
		// after theirs (smallReadahead): files of a directory lie together
		// in a NAR, and are often read together (imports, includes).
		ff, fl := x.Span(base, size)
		if size < chunkindex.TargetChunk && !f.ref.b.Complete(ff, fl) {
			fl = min(fl+f.ref.smallReadahead(ff), len(x.Chunks))
		}
		f.ref.b.Ensure(ctx, ff, ff, max(fl, raLast)) // starts the requests, waits for none
	} else {
		f.ref.b.Ensure(ctx, first, first, raLast)
	}
	f.ref.fill(f.s.cfg.IndexedWholeMax, last)
	if err := f.ref.b.Ensure(ctx, first, last, raLast); err != nil {
		if errors.Is(err, blob.ErrChunk) {
			f.s.stats.corrupt.Add(1)
			return 0, fmt.Errorf("%s: %w: %w", f.p.Path, ErrCorrupt, err)
		}
		return 0, fmt.Errorf("%s: %w", f.p.Path, err)
	}
	return n, nil
}

// Close releases the file; the blob stays open a while for the next.
func (f *ChunkedFile) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.closed {
		f.closed = true
		if f.own != nil {
			f.own.Close()
		} else {
			f.s.publishOwn(f.ref, f.p, f.node)
		}
		f.s.releaseBlob(f.ref)
	}
	return nil
}

// Reader reads the file from its start, each call bounded like ReadAt.
func (f *ChunkedFile) Reader(ctx context.Context) io.Reader {
	return &chunkedReader{ctx: ctx, f: f}
}

type chunkedReader struct {
	ctx context.Context
	f   *ChunkedFile
	off int64
}

func (r *chunkedReader) Read(p []byte) (int, error) {
	if len(p) > tune.MaxRead {
		p = p[:tune.MaxRead]
	}
	n, err := r.f.ReadAt(r.ctx, p, r.off)
	r.off += int64(n)
	return n, err
}
