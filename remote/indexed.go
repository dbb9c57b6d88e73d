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
	"github.com/narfs/narfs/remote/backend"
	"github.com/narfs/narfs/remote/blob"
	"github.com/narfs/narfs/remote/chunkindex"
	"github.com/narfs/narfs/remote/internal/trust"
	"github.com/narfs/narfs/remote/internal/tune"
	"github.com/narfs/narfs/remote/localcache"
)

// ErrNotIndexed: the path has no valid chunk index; read it whole.
var ErrNotIndexed = errors.New("no valid chunk index")

// index returns the path's verified chunk index, or nil (never an error)
// when it has none or it is not usable: the path is then read the stock
// way, as from any stock cache. An index is used only as a whole.
//
// Where the index is: layout 2 (chunkindex's doc) under its alias
// (chunkindex.AliasKey), in caches that keep aliases (s.aliases.on);
// layout 1 where the narinfo names it (NarfsIndex lines), the alias
// then being a copy fetched ahead.
func (s *Store) index(ctx context.Context, p *PathInfo) *trust.Listing {
	url, declared, legacy, err := chunkindex.Location(p.NarInfo)
	if !legacy && !s.aliases.on.Load() {
		return nil
	}
	if err == nil {
		var v *trust.Listing
		if v, err = s.fetchIndex(ctx, p, url, declared, legacy); err == nil {
			return v
		}
	}
	switch {
	case errors.Is(err, errNoIndex), errors.Is(err, errIndexPaused):
		s.log.Debug("no chunk index; the path is read the stock way", "path", p.Path.String(), "err", err)
	case errors.Is(err, ErrNotFound) || errors.Is(err, chunkindex.ErrInvalid) || errors.Is(err, ErrUntrusted):
		s.log.Warn("ignoring the path's chunk index; it is read the stock way", "path", p.Path.String(), "err", err)
	default:
		s.log.Warn("chunk index unavailable; the path is read the stock way", "path", p.Path.String(), "err", err)
	}
	return nil
}

// errNoIndex: a cache that keeps aliases has none for the path (a path
// Nix itself copied there): not indexed, not an error.
var errNoIndex = errors.New("the cache has no index of the path")

// errIndexPaused: an index request outwaited its share of a lookup
// recently; indexes are not asked for until indexPause has passed.
var errIndexPaused = errors.New("index requests paused after one timed out")

// indexContext bounds an index fetch by its share of ctx's deadline.
func indexContext(ctx context.Context) (context.Context, context.CancelFunc) {
	d, ok := ctx.Deadline()
	if !ok {
		return context.WithCancel(ctx)
	}
	share := time.Until(d) * tune.IndexShareNum / tune.IndexShareDen
	return context.WithTimeout(ctx, max(share, 0))
}

// IndexesDeclared reports whether the cache says it keeps a chunk index
// of its paths under their alias names (nix-cache-info's
// NarfsIndexAliases line, or a narinfo that named an index).
func (s *Store) IndexesDeclared() bool { return s.aliases.on.Load() }

// IndexVerified reports whether the path's chunk index verified in this
// Store, now or earlier (a listing held, or the index kept beside the
// path's records from an earlier run and still verifying).
func (s *Store) IndexVerified(p *PathInfo) bool {
	if kl, ok := s.listings.get(p.Path.Hash); ok && kl.index() != nil {
		return true
	}
	if s.verifiedIndexes.Contains(p.Path.Hash) {
		return true
	}
	// Written only after an index was accepted.
	_, _, err := s.cache.GetRecord(s.recordNS, p.Path.Hash+".nidx")
	return err == nil
}

func (s *Store) fetchIndex(ctx context.Context, p *PathInfo, url string, declared int64, legacy bool) (*trust.Listing, error) {
	hash := p.Path.Hash
	// An index read before (kept beside the blob's entry) is checked again
	// like a downloaded one, against the narinfo of now.
	if rec, _, err := s.cache.GetRecord(s.recordNS, hash+".nidx"); err == nil {
		if kl, err := s.acceptIndex(ctx, p, rec); err == nil {
			return kl, nil
		}
	}
	if err := s.failed.Get("index/" + hash); err != nil {
		return nil, fmt.Errorf("index of %s (failed recently): %w", p.Path, err)
	}
	if !legacy && time.Now().UnixNano() < s.aliases.slowUntil.Load() {
		return nil, errIndexPaused
	}
	// Only a share of the lookup's deadline: a cache that hangs on index
	// keys must leave the stock way time to answer.
	ictx, cancel := indexContext(ctx)
	defer cancel()
	bound := chunkindex.ObjectBound(p.NarInfo.NarSize)
	object, aliasErr, asked := s.takeIndexAlias(ictx, hash, !legacy)
	if object != nil {
		kl, err := s.acceptIndex(ictx, p, object)
		if err == nil {
			s.recordIndex(p, object)
			return kl, nil
		}
		if !legacy {
			return nil, s.indexFailed(p, chunkindex.AliasKey(hash), err)
		}
		// Stale (the path was indexed anew since) or foreign: not an
		// error of the path's own index, which is fetched next.
		s.log.Debug("index alias not usable; fetching the narinfo's", "path", p.Path.String(), "err", err)
	}
	key, limit := chunkindex.AliasKey(hash), bound
	if legacy {
		key, limit = url, min(declared, bound)
	} else if asked {
		switch {
		case errors.Is(aliasErr, ErrNotFound):
			return nil, errNoIndex
		case !errors.Is(aliasErr, backend.ErrTooLarge) || bound <= tune.AliasMaxObject:
			// Not delivered in time, or failed: asking again would
			// only wait once more.
			return nil, s.indexFailed(p, key, aliasErr)
		}
	}
	object, err := s.readIndexObject(ictx, key, limit)
	if errors.Is(err, ErrNotFound) && !legacy {
		return nil, errNoIndex
	}
	if err != nil {
		return nil, s.indexFailed(p, key, err)
	}
	kl, err := s.acceptIndex(ictx, p, object)
	if err != nil {
		return nil, s.indexFailed(p, key, err)
	}
	s.recordIndex(p, object)
	return kl, nil
}

// indexFailed remembers a failed index of p and says what failed. One
// that timed out also pauses index requests for every path a while: a
// cache hanging on index keys costs one share of a lookup's deadline a
// minute, not one per lookup.
func (s *Store) indexFailed(p *PathInfo, key string, err error) error {
	err = fmt.Errorf("index %s: %w", key, err)
	switch {
	case errors.Is(err, chunkindex.ErrInvalid), errors.Is(err, ErrUntrusted):
		s.failed.Add("index/"+p.Path.Hash, err, tune.CorruptMemo, tune.CorruptMemo)
	default:
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, errAliasSlow) {
			s.aliases.slowUntil.Store(time.Now().Add(tune.AliasSlowPause).UnixNano())
		}
		s.failed.Add("index/"+p.Path.Hash, err, tune.IndexMemoMin, tune.IndexMemoMax)
	}
	return err
}

// readIndexObject downloads an index object of at most limit bytes,
// holding that much of the listing budget (s.decoding) while it does:
// index bytes count in the same budget as listings. One that could not
// fit a quarter of it (acceptIndex) is not downloaded.
func (s *Store) readIndexObject(ctx context.Context, key string, limit int64) ([]byte, error) {
	if quarter := s.cfg.ListingMemory / 4; limit > quarter {
		limit = quarter
	}
	if limit <= 0 {
		return nil, fmt.Errorf("%w: no index fits", chunkindex.ErrInvalid)
	}
	if err := s.decoding.Acquire(ctx, limit); err != nil {
		return nil, err
	}
	defer s.decoding.Release(limit)
	object, err := backend.ReadAll(ctx, s.be, key, limit)
	if errors.Is(err, backend.ErrTooLarge) {
		err = fmt.Errorf("%w: %w (more than a path of this NarSize can need)", chunkindex.ErrInvalid, err)
	}
	return object, err
}

// recordIndex keeps an accepted index object beside the path's records,
// for restarts without the cache.
func (s *Store) recordIndex(p *PathInfo, object []byte) {
	if err := s.cache.PutRecord(s.recordNS, p.Path.Hash+".nidx", object); err != nil {
		s.log.Warn("recording chunk index locally", "path", p.Path.String(), "err", err)
	}
}

// acceptIndex checks an index object: its size against what the path
// can need, then a signature by a trusted key over it (in every mode:
// trust in an index comes from nothing else; --require-sigs=false and
// trusted=1 trust narinfos, not indexes), before decoding anything; then
// that it holds together and describes this narinfo's NAR and object.
func (s *Store) acceptIndex(ctx context.Context, p *PathInfo, object []byte) (*trust.Listing, error) {
	v, err := trust.VerifyIndex(ctx, p.v, object, s.cfg.TrustedKeys, s.decoding, s.cfg.ListingMemory)
	if err != nil {
		return nil, err
	}
	s.verifiedIndexes.Add(p.Path.Hash, struct{}{})
	return v, nil
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
func (s *Store) openBlob(kl *knownListing, p *PathInfo) (*blobRef, error) {
	key := trust.ChunkedKey(p.v, kl.indexObject())
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
	if fi, err := bf.Stat(); err != nil || fi.Size() != kl.index().NarSize {
		bf.Close()
		mf.Close()
		e.Release()
		s.cache.Forget(key)
		return nil, fmt.Errorf("%s: %w: blob is not NarSize bytes", p.Path, localcache.ErrLocal)
	}
	var r *blobRef
	b, err := blob.New(s.bg, kl.index(), bf, mf, s.be, blob.Options{
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
	}{{blob.BlobFile, kl.index().NarSize}, {blob.MarksFile, int64(len(kl.index().Chunks))}} {
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
	if err := pend.WriteMeta(blob.IndexFile, kl.indexObject()); err != nil {
		return nil, err
	}
	// Accounted at its full size: it may fill up to that.
	e, err := pend.Commit(key, kl.index().NarSize)
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
	r, err := s.openBlob(kl, p)
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
	name := ownFileName(n.NarOffset)
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
		r.e.RemoveData(ownSumName(name))
	}
	return nil
}

// copyOwn copies a complete large file of the blob into a file of its
// own, unless it has one, and then records the hash of the bytes it
// copied (each chunk verified on the way, CopyTo): a reader that finds
// the copy without its record does not use it.
func copyOwn(r *blobRef, n *nar.Node) error {
	name := ownFileName(n.NarOffset)
	if f, err := r.e.OpenRead(name); err == nil {
		f.Close()
		if _, err := r.e.ReadMeta(ownSumName(name)); err == nil {
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
		bw := bufio.NewWriterSize(io.MultiWriter(f, sum), 1<<20)
		if err := r.b.CopyTo(bw, n.NarOffset, n.Size); err != nil {
			return err
		}
		return bw.Flush()
	})
	if err != nil {
		return err
	}
	return r.e.PublishData(ownSumName(name), func(f *os.File) error {
		_, err := f.Write(encodeSum(sum.Sum(nil)))
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
