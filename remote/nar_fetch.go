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
	"sync"
	"time"

	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/nar/compress"
	"github.com/narfs/narfs/remote/backend"
	"github.com/narfs/narfs/remote/blob"
	"github.com/narfs/narfs/remote/internal/layout"
	"github.com/narfs/narfs/remote/internal/trust"
	"github.com/narfs/narfs/remote/internal/tune"
	"github.com/narfs/narfs/remote/localcache"
)

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
	if err := pend.WriteMeta(layout.ListingMeta, buf.Bytes()); err != nil {
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

// store writes the NAR read from r (which also streams it into bw) into
// the pending entry: the blob receives everything but the contents of
// large files, which go to files of their own, each with the record of
// its hash. It returns the listing and the files of their own. For flat
// and text content addresses it feeds the root file's contents to
// caHash.
func store(r io.Reader, bw *blobWriter, pend *localcache.Pending, ca *trust.ContentAddress, caHash hash.Hash) (*nar.Listing, []ownWritten, error) {
	nr := nar.NewReader(r)
	var lb nar.ListingBuilder
	buf := make([]byte, tune.ExtractBuffer)
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
	name := layout.OwnFileName(h.Offset)
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
		err = pend.WriteMeta(layout.OwnSumName(name), layout.EncodeSum(digest))
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
