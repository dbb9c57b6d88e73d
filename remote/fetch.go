package remote

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"math"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/nar/compress"
	"github.com/narfs/narfs/remote/backend"
	"github.com/narfs/narfs/remote/blob"
	"github.com/narfs/narfs/remote/internal/trust"
	"github.com/narfs/narfs/remote/internal/tune"
	"github.com/narfs/narfs/remote/localcache"
)

// listingMeta is the verified listing's file beside an entry's root.
const listingMeta = "listing.json"

// Materialize makes sure the store path's NAR is fetched, verified and
// extracted into the local cache and returns the local path of its root,
// for inspection: the entry is not pinned, so it may be evicted at any
// time after. Readers use OpenVerified.
func (s *Store) Materialize(ctx context.Context, p *PathInfo) (string, error) {
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	e, err := s.entry(ctx, p)
	if err != nil {
		return "", err
	}
	defer e.Release()
	return e.Root(), nil
}

// entry returns the store path's verified local cache entry, pinned,
// fetching the NAR first if needed. Concurrent callers for the same
// download share it; a caller giving up does not cancel it.
func (s *Store) entry(ctx context.Context, p *PathInfo) (*localcache.Entry, error) {
	key := trust.EntryKey(p.v)
	if e, err := s.cache.Acquire(key); err == nil {
		return e, nil
	} else if !errors.Is(err, localcache.ErrMiss) {
		if errors.Is(err, localcache.ErrUnsafe) {
			s.log.Error("local cache entry refused; not served", "path", p.Path.String(), "err", err)
		}
		return nil, fmt.Errorf("%s: %w", p.Path, err)
	}
	fk := trust.FlightKey(p.v)
	if err := s.failed.Get(fk); err != nil {
		return nil, err
	}
	return s.fetches.do(ctx, s.log, fk, fmt.Sprintf("%s: NAR %s of %s", s.url, p.NarInfo.URL, p.Path), func() (*localcache.Entry, error) {
		if e, err := s.cache.Acquire(key); err == nil {
			return e, nil
		}
		if err := s.failed.Get(fk); err != nil {
			return nil, err
		}
		// The references' fetches start with this one, not after it: a
		// walk of the closure then finds them fetched, or under way.
		s.prefetchReferences(p)
		e, err := s.fetch(context.WithoutCancel(ctx), p, key)
		switch {
		case err == nil:
			s.stats.fetches.Add(1)
		case errors.Is(err, ErrCorrupt):
			s.stats.corrupt.Add(1)
			s.failed.Add(fk, err, tune.CorruptMemo, tune.CorruptMemo)
			s.log.Error("NAR failed verification; not served", "path", p.Path.String(), "err", err)
		case errors.Is(err, localcache.ErrLocal):
			s.failed.Add(fk, err, tune.LocalMemoMin, tune.LocalMemoMax)
			if errors.Is(err, syscall.ENOSPC) {
				s.log.Error("the local cache disk is full: NARs cannot be stored (free space or lower --cache-size)", "cache-dir", s.cfg.CacheDir, "path", p.Path.String(), "err", err)
			} else {
				s.log.Error("local cache failure", "cache-dir", s.cfg.CacheDir, "path", p.Path.String(), "err", err)
			}
		default:
			s.log.Warn("NAR fetch failed", "path", p.Path.String(), "err", err)
		}
		return e, err
	})
}

// OpenFile opens a regular file of a store path ("" for a path that is a
// single file) from the local cache, fetching the NAR first if needed.
func (s *Store) OpenFile(ctx context.Context, p *PathInfo, sub string) (*LocalFile, error) {
	f, _, err := s.OpenVerified(ctx, p, sub)
	return f, err
}

// OpenVerified is OpenFile that also returns the file's node in the
// verified listing. Which file is opened is decided by the listing built
// from the verified NAR of this very path, never by a .ls, and the open
// cannot follow a symlink or leave the entry.
func (s *Store) OpenVerified(ctx context.Context, p *PathInfo, sub string) (*LocalFile, *nar.Node, error) {
	if f, n, ok := s.openWarm(p, sub); ok {
		return f, n, nil
	}
	drops := s.cache.Drops() // before the entry is found: see shareWarm
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	for attempt := 0; ; attempt++ {
		e, err := s.entry(ctx, p)
		if errors.Is(err, localcache.ErrMiss) && attempt < 2 {
			// Evicted by another process sharing the cache dir in the
			// instant after it was committed: fetch it again.
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		f, n, err := s.openIn(p, e, sub)
		if err == nil && !f.Own() {
			f = s.shareWarm(e.Key(), f, drops)
		}
		e.Release()
		if errors.Is(err, errOwnMismatch) || errors.Is(err, errOwnUnrecorded) {
			// Never served: the entry goes (unless someone still reads
			// it) and the NAR is fetched and verified again.
			s.stats.corrupt.Add(1)
			s.log.Error("a large file's copy in the local cache does not match what was verified; not served, fetching the NAR again", "path", p.Path.String(), "file", sub, "cache-dir", s.cfg.CacheDir, "err", err)
			if s.cache.Discard(e.Key()) && attempt < 2 {
				s.listings.remove(p.Path.Hash)
				continue
			}
			return nil, nil, err
		}
		if !errors.Is(err, localcache.ErrMiss) || attempt >= 2 {
			return f, n, err
		}
		// Files deleted from under us (by hand): fetch the entry again.
		s.cache.Forget(e.Key())
		s.listings.remove(p.Path.Hash)
	}
}

func (s *Store) openIn(p *PathInfo, e *localcache.Entry, sub string) (*LocalFile, *nar.Node, error) {
	l, err := s.entryListing(p, e)
	if err != nil {
		return nil, nil, err
	}
	n, err := l.Tree().Find(sub)
	if err != nil {
		return nil, nil, fmt.Errorf("%s/%s: %w (%v)", p.Path, sub, ErrNotFound, err)
	}
	if n.Type != nar.TypeRegular {
		return nil, nil, fmt.Errorf("%s/%s: %w (a %s, not a regular file)", p.Path, sub, ErrNotFound, n.Type)
	}
	name, base, want := blob.BlobFile, n.NarOffset, p.NarInfo.NarSize
	if n.Size >= OwnFileMin {
		name, base, want = ownFileName(n.NarOffset), 0, n.Size
	}
	if n.NarOffset <= 0 {
		return nil, nil, fmt.Errorf("%s/%s: %w: verified listing has no offset for the file", p.Path, sub, localcache.ErrLocal)
	}
	f, err := e.OpenRead(name)
	if err != nil {
		return nil, nil, fmt.Errorf("%s/%s: %w", p.Path, sub, err)
	}
	if fi, err := f.Stat(); err != nil || fi.Size() != want || base > want-n.Size {
		f.Close()
		return nil, nil, fmt.Errorf("%s/%s: %w: local cache file does not match the verified listing", p.Path, sub, localcache.ErrLocal)
	}
	if name != blob.BlobFile {
		if err := s.checkOwn(e, name, f, n.Size); err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("%s/%s: %w", p.Path, sub, err)
		}
	}
	return &LocalFile{File: f, Base: base, Size: n.Size}, n, nil
}

// LocalFile is a verified regular file in the local cache: a file of its
// own (Base 0), or Size bytes at Base in a NAR blob.
type LocalFile struct {
	File *os.File
	Base int64
	Size int64
	// release, when set, ends this reader's use of a File shared with
	// others (a warm blob) instead of closing it.
	release func()
}

// Own reports whether the file has a file of its own (the kernel can
// then read it directly).
func (f *LocalFile) Own() bool { return f.Base == 0 }

// ReadAt reads the file's bytes at off.
func (f *LocalFile) ReadAt(p []byte, off int64) (int, error) {
	if off >= f.Size {
		return 0, io.EOF
	}
	if int64(len(p)) > f.Size-off {
		p = p[:f.Size-off]
	}
	n, err := f.File.ReadAt(p, f.Base+off)
	if err == io.EOF && n == len(p) {
		err = nil
	}
	return n, err
}

// Reader reads the file from its start.
func (f *LocalFile) Reader() io.Reader { return io.NewSectionReader(f, 0, f.Size) }

// Close closes the file, or ends this reader's share of it.
func (f *LocalFile) Close() error {
	if f.release != nil {
		f.release()
		return nil
	}
	return f.File.Close()
}

// entryListing is the verified listing of an entry: from memory, else
// from the file written beside it when the NAR was verified.
func (s *Store) entryListing(p *PathInfo, e *localcache.Entry) (*trust.Listing, error) {
	if kl, ok := s.listings.get(p.Path.Hash); ok && kl.verified() {
		return kl.v, nil
	}
	data, err := e.ReadMeta(listingMeta)
	if err != nil {
		return nil, fmt.Errorf("%s: verified listing: %w", p.Path, err)
	}
	l, err := trust.Recorded(data)
	if err != nil {
		return nil, fmt.Errorf("%s: verified listing: %w: %v", p.Path, localcache.ErrLocal, err)
	}
	// The entry may have been fetched for another path with the same
	// contents, or before a restart: this path's answers switch to it now.
	s.verified(p, l)
	return l, nil
}

// fetchDeadline bounds one whole download: the operation's timeout plus
// the time the NAR takes at the slowest rate still not a stall, so that
// only a server that stops making progress ends it.
func (s *Store) fetchDeadline(narSize int64) time.Duration {
	rate := s.cfg.Backend.MinRate
	if rate <= 0 {
		rate = backend.DefaultMinRate
	}
	secs := narSize / rate
	if secs > int64(math.MaxInt64/time.Second)-int64(s.cfg.Timeout/time.Second) {
		return time.Duration(math.MaxInt64)
	}
	return s.cfg.Timeout + time.Duration(secs)*time.Second
}

// fetch downloads, decompresses, verifies and extracts one NAR and
// returns its committed entry, pinned.
func (s *Store) fetch(ctx context.Context, p *PathInfo, key string) (*localcache.Entry, error) {
	ni := p.NarInfo
	where := fmt.Sprintf("NAR %s of %s", ni.URL, p.Path)
	ctx, cancel := context.WithTimeout(ctx, s.fetchDeadline(ni.NarSize))
	defer cancel()
	raw, encoding, err := s.openNAR(ctx, ni)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	body := &errRecorder{r: raw}
	defer raw.Close()

	// A server may add a transport encoding on top of the NAR's own
	// compression (harmonia does with zstd).
	src, err := backend.NewContentDecoder(encoding, body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	defer src.Close()
	dec, err := compress.NewReader(ni.EffectiveCompression(), src)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %v", where, ErrCorrupt, err)
	}
	defer dec.Close()
	pend, err := s.cache.Begin()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	defer pend.Abort()

	v := &verifier{limit: ni.NarSize, sha: sha256.New()}
	var caHash hash.Hash
	if p.v.CA != nil {
		if caHash, err = p.v.CA.NewHash(); err != nil {
			return nil, fmt.Errorf("%s: %w: %v", where, ErrCorrupt, err)
		}
		if p.v.CA.Recursive() {
			v.extra = caHash
		}
	}
	// Three stages overlap, each on its goroutine with bounded queues
	// between them: download and decompression; hashing (of the same
	// buffers, not a copy); parsing and writing (this goroutine). A cold
	// fetch costs the slowest stage, not their sum. The decompressed
	// stream is cut at NarSize+1 bytes before the first queue, so a
	// decompression bomb is not read far past the verifier's limit. v's
	// fields are read here only after the hashing stage has handed over
	// its end (EOF), which it sends after its last write to them. On the
	// way out the download is cancelled first, so every stage's Read
	// returns and each can stop.
	hashed := newInspectedReadAhead(io.LimitReader(dec, satAdd(ni.NarSize, 1)), 2*tune.AheadDepth, tune.AheadBuffer, v.inspect)
	defer hashed.Close()
	defer cancel()

	blobF, err := pend.CreateFile(blob.BlobFile)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	defer blobF.Close()
	bw := &blobWriter{f: blobF}
	listing, owns, err := store(io.TeeReader(hashed, bw), bw, pend, p.v.CA, caHash)
	if err == nil {
		err = drain(hashed)
	}

	if err != nil {
		if berr := body.first(); berr != nil {
			// The cache or the network failed, not the data: retryable.
			return nil, fmt.Errorf("%s: %w", where, berr)
		}
		if localIOError(err) {
			// Disk full, cache dir gone: our problem, not the cache's.
			return nil, fmt.Errorf("%s: %w: %w", where, localcache.ErrLocal, err)
		}
		return nil, fmt.Errorf("%s: %w: %v", where, ErrCorrupt, err)
	}
	var caSum []byte
	if caHash != nil {
		caSum = caHash.Sum(nil)
	}
	verified, err := trust.VerifyNAR(p.v, listing, v.n, v.sha.Sum(nil), caSum)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	// Files of their own leave holes in the blob; the last may end it.
	if err := blobF.Truncate(ni.NarSize); err != nil {
		return nil, fmt.Errorf("%s: %w: %w", where, localcache.ErrLocal, err)
	}
	var buf bytes.Buffer
	if err := verified.Tree().Encode(&buf); err != nil {
		return nil, fmt.Errorf("%s: listing: %w", where, err)
	}
	if err := pend.WriteMeta(listingMeta, buf.Bytes()); err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	e, err := pend.Commit(key, ni.NarSize)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	s.trustWritten(e, owns)
	s.recordNarinfo(p)
	s.verified(p, verified)
	return e, nil
}

// verified makes the NAR's listing the only answer for the path from now
// on and tells the mount, which drops what the kernel cached of any other
// answer. Metadata from the unsigned .ls (or the NAR's first header) may
// already have been handed out; if it disagrees, the .ls lied.
// The listing may carry the path's chunk index (it came from one).
func (s *Store) verified(p *PathInfo, v *trust.Listing) {
	kl := knownVerified(v)
	l := kl.Listing
	if old, ok := s.listings.get(p.Path.Hash); ok {
		if !old.verified() && !nar.SameTree(old.Root, l.Root) {
			s.stats.corrupt.Add(1)
			s.log.Error("the cache's .ls listing disagrees with the verified NAR; the NAR's listing is used from now on", "path", p.Path.String())
		}
		if old.index() != nil && kl.index() == nil && nar.SameTree(old.Root, l.Root) {
			// The NAR was fetched whole as well: keep reading by chunks.
			kl = old
		}
	}
	s.listings.add(p.Path.Hash, kl)
	s.hooksMu.Lock()
	hooks := s.onVerified
	s.hooksMu.Unlock()
	for _, fn := range hooks {
		fn(p, l)
	}
}

// OnVerified registers fn to be called, on the fetching goroutine, each
// time a store path's NAR has been verified, with the listing built from
// it. fn must not block.
func (s *Store) OnVerified(fn func(p *PathInfo, l *nar.Listing)) {
	s.hooksMu.Lock()
	defer s.hooksMu.Unlock()
	s.onVerified = append(s.onVerified, fn)
}

// localIOError reports failures of the local file system (ENOSPC, EIO of
// the cache dir, ...) as opposed to bad data from the cache.
func localIOError(err error) bool {
	var pe *os.PathError
	var le *os.LinkError
	return errors.As(err, &pe) || errors.As(err, &le) || errors.Is(err, localcache.ErrLocal)
}

// OwnFileMin: a file this large is stored in a file of its own, which the
// kernel can read directly; smaller files are read from the NAR blob at
// their narOffset. It equals MaxRead (see tune.MaxRead for why).
const OwnFileMin = tune.OwnFileMin

// ownFileName names the file holding the contents at a NAR offset.
func ownFileName(narOffset int64) string { return "f-" + strconv.FormatInt(narOffset, 10) }

// store writes the NAR read from r (which also streams it into bw) into
// the pending entry: the blob receives everything but the contents of
// large files, which go to files of their own, each with the record of
// its hash. It returns the listing and the files of their own. For flat
// and text content addresses it feeds the root file's contents to
// caHash.
func store(r io.Reader, bw *blobWriter, pend *localcache.Pending, ca *trust.ContentAddress, caHash hash.Hash) (*nar.Listing, []ownWritten, error) {
	nr := nar.NewReader(r)
	var lb nar.ListingBuilder
	buf := make([]byte, 256<<10)
	var owns []ownWritten
	for {
		h, err := nr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, nil, err
		}
		lb.Add(h)
		if h.Type != nar.TypeRegular {
			continue
		}
		var content io.Reader = nr
		if ca != nil && !ca.Recursive() {
			if h.Path != "" || h.Executable {
				return nil, nil, fmt.Errorf("flat/text CA needs a single non-executable file")
			}
			content = io.TeeReader(nr, caHash)
		}
		if h.Size >= OwnFileMin {
			bw.skip(h.Offset, h.Size)
			w, err := writeOwnFile(pend, h, content, buf)
			if err != nil {
				return nil, nil, err
			}
			owns = append(owns, w)
		} else if content != io.Reader(nr) {
			if _, err := io.CopyBuffer(io.Discard, content, buf); err != nil {
				return nil, nil, err
			}
		}
	}
	l := lb.Listing()
	if l.Root == nil {
		return nil, nil, fmt.Errorf("empty NAR")
	}
	if ca != nil && !ca.Recursive() && l.Root.Type != nar.TypeRegular {
		return nil, nil, fmt.Errorf("flat/text CA on a path that is not a single file")
	}
	return l, owns, nil
}

// writeOwnFile writes a large file's contents to a file of its own and
// the record of their hash beside it. Both become part of the entry only
// if the whole NAR verifies.
func writeOwnFile(pend *localcache.Pending, h *nar.Header, content io.Reader, buf []byte) (ownWritten, error) {
	name := ownFileName(h.Offset)
	f, err := pend.CreateFile(name)
	if err != nil {
		return ownWritten{}, err
	}
	sum := newAsyncSum()
	n, err := io.CopyBuffer(io.MultiWriter(f, sum), content, buf)
	digest := sum.Sum()
	if err == nil && n != h.Size {
		err = fmt.Errorf("%s: short file contents", h.Path)
	}
	var id fileID
	if err == nil {
		if id, err = idOf(f); err != nil {
			err = fmt.Errorf("%w: %w", localcache.ErrLocal, err)
		}
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("%w: %w", localcache.ErrLocal, cerr)
	}
	if err == nil {
		err = pend.WriteMeta(ownSumName(name), encodeSum(digest))
	}
	return ownWritten{name: name, id: id}, err
}

// blobWriter writes the NAR stream at its offsets into the blob, leaving
// a hole where a large file's contents go to a file of their own. The
// NAR reader reads ahead of what it parsed, so a few KiB of such contents
// may land in the blob too; nothing reads them there.
type blobWriter struct {
	f                *os.File
	off              int64
	skipFrom, skipTo int64
}

func (w *blobWriter) skip(off, n int64) { w.skipFrom, w.skipTo = off, off+n }

func (w *blobWriter) Write(p []byte) (int, error) {
	start, end := w.off, w.off+int64(len(p))
	w.off = end
	put := func(from, to int64) error {
		if from >= to {
			return nil
		}
		if _, err := w.f.WriteAt(p[from-start:to-start], from); err != nil {
			return fmt.Errorf("%w: %w", localcache.ErrLocal, err)
		}
		return nil
	}
	if err := put(start, min(end, max(start, w.skipFrom))); err != nil {
		return 0, err
	}
	if err := put(max(start, min(end, w.skipTo)), end); err != nil {
		return 0, err
	}
	return len(p), nil
}

// verifier hashes and counts the decompressed NAR, which reaches it cut
// at NarSize+1 bytes: one byte more than NarSize says is enough to know
// the NAR is longer.
type verifier struct {
	limit int64 // NarSize: any value a cache may send, up to MaxInt64
	n     int64 // at most limit+1 (the stream is cut there), so no overflow
	sha   hash.Hash
	extra hash.Hash // CA hash of the whole NAR, when not sha256
}

// inspect takes the NAR's next bytes (newInspectedReadAhead).
func (v *verifier) inspect(p []byte) error {
	v.n += int64(len(p))
	v.sha.Write(p)
	if v.extra != nil {
		v.extra.Write(p)
	}
	if v.n > v.limit {
		return fmt.Errorf("NAR is longer than NarSize %d", v.limit)
	}
	return nil
}

// satAdd is a+b for non-negative values, at most MaxInt64.
func satAdd(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// drain reads what follows the NAR's last token: there must be nothing.
func drain(r io.Reader) error {
	n, err := io.Copy(io.Discard, r)
	if err != nil {
		return err
	}
	if n > 0 {
		return fmt.Errorf("%d bytes of trailing data after the NAR", n)
	}
	return nil
}

// errRecorder remembers the first error the upstream body returned, to
// tell network failures (retryable) from bad data (corrupt). It is read on
// the read-ahead's goroutine and asked on fetch's: an error that reached
// fetch through the read-ahead was recorded before it was handed over.
type errRecorder struct {
	r   io.Reader
	mu  sync.Mutex
	err error // protected by mu
}

func (e *errRecorder) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF {
		e.mu.Lock()
		if e.err == nil {
			e.err = err
		}
		e.mu.Unlock()
	}
	return n, err
}

func (e *errRecorder) first() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.err
}
