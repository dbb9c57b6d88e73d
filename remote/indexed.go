package remote

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/remote/backend"
	"github.com/narfs/narfs/remote/blob"
	"github.com/narfs/narfs/remote/chunkindex"
	"github.com/narfs/narfs/remote/localcache"
	"github.com/narfs/narfs/remote/storepath"
)

// ErrNotIndexed: the path has no valid chunk index; read it whole.
var ErrNotIndexed = errors.New("no valid chunk index")

// blobLinger is how long an indexed path's open blob is kept after its
// last reader closed it, so that the next open finds it warm.
const blobLinger = 30 * time.Second

// chunkedKey names an indexed path's blob entry: the NAR and the index it
// was cut by (another index of the same NAR has other chunks).
func chunkedKey(p *PathInfo, object []byte) string {
	d := chunkindex.Digest(object)
	return entryKey(p) + "-x-" + storepath.EncodeNix32(d.Digest)[:20]
}

// index returns the path's verified chunk index, or nil (never an error)
// when it has none or it is not usable: the path is then read whole, as
// from any stock cache. An index is used only as a whole.
func (s *Store) index(ctx context.Context, p *PathInfo) *knownListing {
	url, size, ok, err := chunkindex.Location(p.NarInfo)
	if !ok {
		return nil
	}
	if err == nil {
		var kl *knownListing
		if kl, err = s.fetchIndex(ctx, p, url, size); err == nil {
			return kl
		}
	}
	if errors.Is(err, ErrNotFound) || errors.Is(err, chunkindex.ErrInvalid) || errors.Is(err, ErrUntrusted) {
		s.log.Warn("ignoring the path's chunk index; it is read whole", "path", p.Path.String(), "err", err)
	} else {
		s.log.Warn("chunk index unavailable; the path is read whole", "path", p.Path.String(), "err", err)
	}
	return nil
}

func (s *Store) fetchIndex(ctx context.Context, p *PathInfo, url string, size int64) (*knownListing, error) {
	// An index read before (kept beside the blob's entry) is checked again
	// like a downloaded one, against the narinfo of now.
	if rec, _, err := s.cache.GetRecord(s.recordNS, p.Path.Hash+".nidx"); err == nil {
		if kl, err := s.acceptIndex(ctx, p, rec); err == nil {
			return kl, nil
		}
	}
	if s.failed.get("index/"+p.Path.Hash) != nil {
		return nil, fmt.Errorf("index %s: %w (failed recently)", url, chunkindex.ErrInvalid)
	}
	if object := s.takeIndexAlias(ctx, p.Path.Hash); object != nil {
		kl, err := s.acceptIndex(ctx, p, object)
		if err == nil {
			s.recordIndex(p, object)
			return kl, nil
		}
		// Stale (the path was indexed anew since) or foreign: not an
		// error of the path's own index, which is fetched next.
		s.log.Debug("index alias not usable; fetching the narinfo's", "path", p.Path.String(), "err", err)
	}
	object, err := backend.ReadAll(ctx, s.be, url, size)
	if err != nil {
		if errors.Is(err, backend.ErrTooLarge) {
			err = fmt.Errorf("%w: %v", chunkindex.ErrInvalid, err)
		}
		return nil, fmt.Errorf("index %s: %w", url, err)
	}
	kl, err := s.acceptIndex(ctx, p, object)
	if err != nil {
		s.failed.add("index/"+p.Path.Hash, err, corruptMemo, corruptMemo)
		return nil, fmt.Errorf("index %s: %w", url, err)
	}
	s.recordIndex(p, object)
	return kl, nil
}

// recordIndex keeps an accepted index object beside the path's records,
// for restarts without the cache.
func (s *Store) recordIndex(p *PathInfo, object []byte) {
	if err := s.cache.PutRecord(s.recordNS, p.Path.Hash+".nidx", object); err != nil {
		s.log.Warn("recording chunk index locally", "path", p.Path.String(), "err", err)
	}
}

// acceptIndex checks an index object: the signature first (nothing of an
// unsigned index is decoded), then that it holds together and describes
// this narinfo's NAR and object.
func (s *Store) acceptIndex(ctx context.Context, p *PathInfo, object []byte) (*knownListing, error) {
	if size, _ := p.NarInfo.Get(chunkindex.KeySize); size != fmt.Sprint(len(object)) {
		return nil, fmt.Errorf("%w: %d bytes, narinfo says %s", chunkindex.ErrInvalid, len(object), size)
	}
	if !s.trustAll {
		if _, err := chunkindex.Verify(p.NarInfo, object, s.cfg.TrustedKeys); err != nil {
			return nil, err
		}
	}
	// Decoding takes a few times the object's decoded size: bound
	// concurrent decodes by the listing budget, as for .ls.
	weight := min(int64(chunkindex.MaxDecoded), s.cfg.ListingMemory, 16*int64(len(object)))
	if err := s.decoding.Acquire(ctx, weight); err != nil {
		return nil, err
	}
	x, err := chunkindex.Decode(object)
	s.decoding.Release(weight)
	if err != nil {
		return nil, err
	}
	if err := x.Matches(p.NarInfo); err != nil {
		return nil, err
	}
	cost := x.Listing.MemSize() + int64(len(x.Chunks))*64 + int64(len(object))
	if !s.listings.fits(cost) {
		return nil, fmt.Errorf("%w: %d bytes in memory, more than a quarter of the listing budget", chunkindex.ErrInvalid, cost)
	}
	return &knownListing{Listing: x.Listing, verified: true, cost: cost, index: x, indexObject: object}, nil
}

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

// DefaultIndexedWholeMax is Config.IndexedWholeMax's default: an indexed
// path whose stored object is at most this large is fetched whole, in the
// background, in parallel, from its first read on (each chunk still
// verified before it is served; readers wait only for their own chunks).
// Reads of such a path (a Python stdlib, a directory of libraries) tend
// to touch much of it, one file after another, and each miss would be a
// round trip; 16 parallel requests of at most 2 MiB cost about one.
// Larger paths (a Go toolchain) are read by ranges.
const DefaultIndexedWholeMax = 32 << 20

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

// maxSmallRA bounds smallRA: 8 chunks is ~8 MiB, a few round trips'
// worth of transfer on object storage.
const maxSmallRA = 8

// smallReadahead returns how many chunks after chunk c to fetch with a
// small file there, and records the read.
func (r *blobRef) smallReadahead(c int) int {
	r.raMu.Lock()
	defer r.raMu.Unlock()
	if r.lastSmall >= 0 && c >= r.lastSmall-1 && c <= r.lastSmall+r.smallRA+2 {
		r.smallRA = min(max(2*r.smallRA, 1), maxSmallRA)
	} else {
		r.smallRA = 1
	}
	r.lastSmall = c
	return r.smallRA
}

// openBlob returns the indexed path's blob, creating its local cache
// entry (an empty sparse blob) the first time.
func (s *Store) openBlob(kl *knownListing, p *PathInfo) (*blobRef, error) {
	key := chunkedKey(p, kl.indexObject)
	s.blobsMu.Lock()
	defer s.blobsMu.Unlock()
	if r, ok := s.blobs[key]; ok {
		r.refs++
		r.gen++
		return r, nil
	}
	e, err := s.cache.Acquire(key)
	if errors.Is(err, localcache.ErrMiss) {
		e, err = s.createBlob(key, kl, p)
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
	if fi, err := bf.Stat(); err != nil || fi.Size() != kl.index.NarSize {
		bf.Close()
		mf.Close()
		e.Release()
		s.cache.Forget(key)
		return nil, fmt.Errorf("%s: %w: blob is not NarSize bytes", p.Path, localcache.ErrLocal)
	}
	var r *blobRef
	b, err := blob.New(s.bg, kl.index, bf, mf, s.be, blob.Options{
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

func (s *Store) createBlob(key string, kl *knownListing, p *PathInfo) (*localcache.Entry, error) {
	pend, err := s.cache.Begin()
	if err != nil {
		return nil, err
	}
	defer pend.Abort()
	for _, f := range []struct {
		name string
		size int64
	}{{blob.BlobFile, kl.index.NarSize}, {blob.MarksFile, int64(len(kl.index.Chunks))}} {
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
	if err := pend.WriteMeta(blob.IndexFile, kl.indexObject); err != nil {
		return nil, err
	}
	// Accounted at its full size: it may fill up to that.
	e, err := pend.Commit(key, kl.index.NarSize)
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
	time.AfterFunc(blobLinger, func() {
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
	if err != nil || kl.index == nil {
		return nil, ErrNotIndexed
	}
	n, err := kl.Find(sub)
	if err != nil {
		return nil, fmt.Errorf("%s/%s: %w (%v)", p.Path, sub, ErrNotFound, err)
	}
	if n.Type != nar.TypeRegular {
		return nil, fmt.Errorf("%s/%s: %w (a %s, not a regular file)", p.Path, sub, ErrNotFound, n.Type)
	}
	r, err := s.openBlob(kl, p)
	if err != nil {
		return nil, err
	}
	f := &ChunkedFile{s: s, p: p, ref: r, node: n}
	if n.Size >= OwnFileMin {
		// Once complete, a large file has a file of its own, which the
		// kernel can read directly.
		if lf, err := r.e.OpenRead(ownFileName(n.NarOffset)); err == nil {
			if fi, err := lf.Stat(); err == nil && fi.Size() == n.Size {
				f.own = &LocalFile{File: lf, Size: n.Size}
			} else {
				lf.Close()
			}
		}
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

// copyOwn copies a complete large file of the blob into a file of its
// own, unless it has one.
func copyOwn(r *blobRef, n *nar.Node) error {
	name := ownFileName(n.NarOffset)
	if f, err := r.e.OpenRead(name); err == nil {
		f.Close()
		return nil
	}
	return r.e.PublishData(name, func(f *os.File) error {
		bw := bufio.NewWriterSize(f, 1<<20)
		if err := r.b.CopyTo(bw, n.NarOffset, n.Size); err != nil {
			return err
		}
		return bw.Flush()
	})
}

// Node is the file's node in the signed listing.
func (f *ChunkedFile) Node() *nar.Node { return f.node }

// Readahead bounds: reads that follow each other double the window from
// minWindow up to maxWindow, fetched in parallel requests of at most a
// few MiB.
const (
	minWindow = 2 << 20
	maxWindow = 16 << 20
)

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
	if d := off - f.nextOff; d > -maxRead && d < maxRead && off > 0 {
		f.window = min(max(2*f.window, minWindow), maxWindow)
	} else {
		f.window = 0
	}
	f.nextOff = max(f.nextOff, off+n)
	window := f.window
	whole := !f.wholeAsked && size <= wholeFileMax
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

// wholeFileMax: files up to this size are fetched whole at their first
// read (bin/go is ~15 MiB); larger ones by the reads' ranges and the
// sequential readahead, so random reads of a large file fetch about a
// chunk each.
const wholeFileMax = 16 << 20

// maxRead is the largest read the kernel sends in one request.
const maxRead = 1 << 20

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
	if len(p) > maxRead {
		p = p[:maxRead]
	}
	n, err := r.f.ReadAt(r.ctx, p, r.off)
	r.off += int64(n)
	return n, err
}
