package fetch

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

// Body is a NAR download as the server sends it.
type Body struct {
	// R is the NAR, compressed as its narinfo says.
	R io.Reader
	// Encoding is a transport encoding the server added on top of the
	// NAR's own compression (harmonia adds zstd), "" for none.
	Encoding string
	// Stop makes a Read of R in progress return: it cancels the context R
	// is read under. NAR calls it on its way out, before it waits for its
	// goroutines, and when ctx is done. Nil if R's Reads never block
	// (R is then read to its end or to the first error).
	Stop func()
}

// Own is a large file's copy of its own that NAR wrote into the pending
// entry, from bytes that verified with the whole NAR.
type Own struct {
	Name string      // layout.OwnFileName of its NAR offset
	Info os.FileInfo // the file as written, before the entry is committed
}

// Deadline bounds one whole download: the operation's timeout plus the
// time a NAR of narSize bytes takes at the slowest rate still not a stall
// (minRate bytes/s; backend.DefaultMinRate when ≤ 0), so that only a
// server that stops making progress ends it.
func Deadline(timeout time.Duration, minRate, narSize int64) time.Duration {
	if minRate <= 0 {
		minRate = backend.DefaultMinRate
	}
	secs := narSize / minRate
	if secs > int64(math.MaxInt64/time.Second)-int64(timeout/time.Second) {
		return time.Duration(math.MaxInt64)
	}
	return timeout + time.Duration(secs)*time.Second
}

// LocalIOError reports failures of the local file system (ENOSPC, EIO of
// the cache dir, ...) as opposed to bad data from the cache.
func LocalIOError(err error) bool {
	var pe *os.PathError
	var le *os.LinkError
	return errors.As(err, &pe) || errors.As(err, &le) || errors.Is(err, localcache.ErrLocal)
}

// NAR decodes, verifies and extracts the NAR of p read from body into
// pend, which the caller commits (or aborts) after: the blob, large files'
// own copies with the records of their hashes, and listing.json. It
// returns the verified listing and the own copies it wrote. Nothing of
// pend may be used unless NAR returns no error.
//
// Errors: a failure of body (the network, the cache) as it came, which is
// retryable; localcache.ErrLocal for the local disk's; trust.ErrCorrupt
// when the bytes are not the NAR p's narinfo vouches for. Messages do not
// name the NAR: the caller, who opened it, does.
func NAR(ctx context.Context, body Body, p *trust.Path, pend *localcache.Pending) (*trust.Listing, []Own, error) {
	ni := p.NarInfo
	if body.Stop != nil {
		defer context.AfterFunc(ctx, body.Stop)()
	}
	raw := &errRecorder{r: body.R}
	src, err := backend.NewContentDecoder(body.Encoding, raw)
	if err != nil {
		return nil, nil, err
	}
	defer src.Close()
	dec, err := compress.NewReader(ni.EffectiveCompression(), src)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", trust.ErrCorrupt, err)
	}
	defer dec.Close()

	v := &verifier{limit: ni.NarSize, sha: sha256.New()}
	var caHash hash.Hash
	if p.CA != nil {
		if caHash, err = p.CA.NewHash(); err != nil {
			return nil, nil, fmt.Errorf("%w: %v", trust.ErrCorrupt, err)
		}
		if p.CA.Recursive() {
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
	// its end (EOF), which it sends after its last write to them.
	hashed := newInspectedReadAhead(io.LimitReader(dec, satAdd(ni.NarSize, 1)), 2*tune.AheadDepth, tune.AheadBuffer, v.inspect)
	defer hashed.Close()
	if body.Stop != nil {
		// On the way out the download is stopped first, so every stage's
		// Read returns and each can stop.
		defer body.Stop()
	}

	blobF, err := pend.CreateFile(blob.BlobFile)
	if err != nil {
		return nil, nil, err
	}
	defer blobF.Close()
	bw := &blobWriter{f: blobF}
	listing, owns, err := store(io.TeeReader(hashed, bw), bw, pend, p.CA, caHash)
	if err == nil {
		err = drain(hashed)
	}

	if err != nil {
		if berr := raw.first(); berr != nil {
			// The cache or the network failed, not the data: retryable.
			return nil, nil, berr
		}
		if LocalIOError(err) {
			// Disk full, cache dir gone: our problem, not the cache's.
			return nil, nil, fmt.Errorf("%w: %w", localcache.ErrLocal, err)
		}
		return nil, nil, fmt.Errorf("%w: %v", trust.ErrCorrupt, err)
	}
	var caSum []byte
	if caHash != nil {
		caSum = caHash.Sum(nil)
	}
	verified, err := trust.VerifyNAR(p, listing, v.n, v.sha.Sum(nil), caSum)
	if err != nil {
		return nil, nil, err
	}
	// Files of their own leave holes in the blob; the last may end it.
	if err := blobF.Truncate(ni.NarSize); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", localcache.ErrLocal, err)
	}
	var buf bytes.Buffer
	if err := verified.Tree().Encode(&buf); err != nil {
		return nil, nil, fmt.Errorf("listing: %w", err)
	}
	if err := pend.WriteMeta(layout.ListingMeta, buf.Bytes()); err != nil {
		return nil, nil, err
	}
	return verified, owns, nil
}

// store writes the NAR read from r (which also streams it into bw) into
// the pending entry: the blob receives everything but the contents of
// large files, which go to files of their own, each with the record of
// its hash. It returns the listing and the files of their own. For flat
// and text content addresses it feeds the root file's contents to
// caHash.
func store(r io.Reader, bw *blobWriter, pend *localcache.Pending, ca *trust.ContentAddress, caHash hash.Hash) (*nar.Listing, []Own, error) {
	nr := nar.NewReader(r)
	var lb nar.ListingBuilder
	buf := make([]byte, tune.ExtractBuffer)
	var owns []Own
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
		if h.Size >= tune.OwnFileMin {
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
