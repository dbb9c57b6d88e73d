package remote

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/nar/compress"
	"github.com/narfs/narfs/remote/backend"
	"github.com/narfs/narfs/remote/storepath"
)

// corruptMemo is how long a NAR that failed verification is not fetched
// again: long enough that a reader retrying in a loop does not turn into a
// download loop, short enough that a repaired cache heals quickly.
const corruptMemo = time.Minute

// Materialize makes sure the store path's NAR is fetched, verified and
// extracted into the local cache and returns the local path of its root
// together with the listing built from the NAR. Concurrent callers for the
// same NAR share one fetch; a caller giving up does not cancel it.
func (s *Store) Materialize(ctx context.Context, p *PathInfo) (string, error) {
	key := storepath.EncodeNix32(p.NarInfo.NarHash.Digest)
	if root := s.cache.root(key); root != "" {
		return root, nil
	}
	if err := s.failed.get(key); err != nil {
		return "", err
	}
	v, err := shared(ctx, &s.fetchGroup, key, func() (any, error) {
		if root := s.cache.root(key); root != "" {
			return root, nil
		}
		if err := s.failed.get(key); err != nil {
			return "", err
		}
		root, err := s.fetch(context.WithoutCancel(ctx), p, key)
		if errors.Is(err, errListingLied) {
			s.stats.fetches.Add(1)
			s.stats.corrupt.Add(1)
			s.log.Error(".ls listing contradicted by the NAR", "path", p.Path.String(), "err", err)
			return "", err
		}
		if err != nil {
			if errors.Is(err, ErrCorrupt) {
				s.stats.corrupt.Add(1)
				s.failed.add(key, err)
				s.log.Error("NAR failed verification; not served", "path", p.Path.String(), "err", err)
			} else {
				s.log.Warn("NAR fetch failed", "path", p.Path.String(), "err", err)
			}
			return "", err
		}
		s.stats.fetches.Add(1)
		s.prefetchReferences(p)
		return root, nil
	})
	if err != nil {
		return "", err
	}
	return v.(string), nil
}

// OpenFile opens a regular file of a store path ("" for a path that is a
// single file) from the local cache, fetching the NAR first if needed.
// Symlinks are not followed and ".." is not a name: anything but a regular
// file of the NAR is ErrNotFound.
func (s *Store) OpenFile(ctx context.Context, p *PathInfo, sub string) (*os.File, error) {
	for attempt := 0; ; attempt++ {
		root, err := s.Materialize(ctx, p)
		if err != nil {
			return nil, err
		}
		// The listing walks names without following symlinks, so the open
		// below cannot leave the store path for the cache's bookkeeping or
		// the host's files.
		n, err := s.Lookup(ctx, p, sub)
		if err != nil {
			return nil, err
		}
		if n.Type != nar.TypeRegular {
			return nil, fmt.Errorf("%s/%s: %w (a %s, not a regular file)", p.Path, sub, ErrNotFound, n.Type)
		}
		f, err := os.OpenFile(filepath.Join(root, filepath.FromSlash(sub)), os.O_RDONLY|syscall.O_NOFOLLOW, 0)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s/%s: %w", p.Path, sub, err)
		}
		if _, lerr := os.Lstat(root); lerr == nil {
			// The entry is there: the NAR has no such file.
			return nil, fmt.Errorf("%s/%s: %w", p.Path, sub, ErrNotFound)
		}
		if attempt > 0 {
			return nil, fmt.Errorf("%s/%s: local cache entry vanished: %w", p.Path, sub, err)
		}
		// Evicted between Materialize and Open, or deleted from under us
		// (by hand, or by another narfs sharing the cache dir): forget it
		// so that the retry fetches it again.
		s.cache.forget(storepath.EncodeNix32(p.NarInfo.NarHash.Digest))
	}
}

// fetch downloads, decompresses, verifies and extracts one NAR.
func (s *Store) fetch(ctx context.Context, p *PathInfo, key string) (string, error) {
	ni := p.NarInfo
	where := fmt.Sprintf("NAR %s of %s", ni.URL, p.Path)
	obj, err := s.be.Get(ctx, ni.URL)
	if err != nil {
		return "", fmt.Errorf("%s: %w", where, err)
	}
	body := &errRecorder{r: obj.Body}
	defer obj.Body.Close()

	// A server may add a transport encoding on top of the NAR's own
	// compression (harmonia does with zstd).
	src, err := backend.NewContentDecoder(obj.ContentEncoding, body)
	if err != nil {
		return "", fmt.Errorf("%s: %w", where, err)
	}
	defer src.Close()
	dec, err := compress.NewReader(ni.EffectiveCompression(), src)
	if err != nil {
		return "", fmt.Errorf("%s: %w: %v", where, ErrCorrupt, err)
	}
	defer dec.Close()

	tmp, err := s.cache.tempDir()
	if err != nil {
		return "", fmt.Errorf("%s: %w", where, err)
	}
	committed := false
	defer func() {
		if !committed {
			os.RemoveAll(tmp)
		}
	}()

	v := &verifier{r: dec, limit: ni.NarSize, sha: sha256.New()}
	var caHash hash.Hash
	if p.ca != nil {
		if caHash, err = p.ca.newHash(); err != nil {
			return "", fmt.Errorf("%s: %w: %v", where, ErrCorrupt, err)
		}
		if p.ca.recursive {
			v.extra = caHash
		}
	}
	listing, err := extract(v, filepath.Join(tmp, "root"), p.ca, caHash)
	if err == nil {
		err = v.drain()
	}
	if err != nil {
		if body.err != nil {
			// The cache or the network failed, not the data: retryable.
			return "", fmt.Errorf("%s: %w", where, body.err)
		}
		if localIOError(err) {
			// Disk full, cache dir gone: our problem, not the cache's.
			return "", fmt.Errorf("%s: local cache: %w", where, err)
		}
		return "", fmt.Errorf("%s: %w: %v", where, ErrCorrupt, err)
	}
	if v.n != ni.NarSize {
		return "", fmt.Errorf("%s: %w: NAR is %d bytes, narinfo says NarSize %d", where, ErrCorrupt, v.n, ni.NarSize)
	}
	if got := v.sha.Sum(nil); !bytes.Equal(got, ni.NarHash.Digest) {
		return "", fmt.Errorf("%s: %w: NAR hash mismatch: expected %s, got sha256:%s", where, ErrCorrupt, ni.NarHash, storepath.EncodeNix32(got))
	}
	if p.ca != nil {
		if got := caHash.Sum(nil); !bytes.Equal(got, p.ca.hash.Digest) {
			return "", fmt.Errorf("%s: %w: content hash does not match CA %s", where, ErrCorrupt, ni.CA)
		}
	}
	// Metadata from the unsigned .ls may already have been handed out; if
	// it disagrees with the verified NAR, it lied. The NAR itself is good:
	// it is kept, and its listing replaces the lie from now on.
	ls, ok := s.listings.Get(p.Path.Hash)
	lied := ok && !sameListing(ls.Root, listing.Root)
	var buf bytes.Buffer
	if err := listing.Encode(&buf); err != nil {
		return "", fmt.Errorf("%s: listing: %w", where, err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "listing.json"), buf.Bytes(), 0o644); err != nil {
		return "", fmt.Errorf("%s: %w", where, err)
	}
	root, err := s.cache.commit(tmp, key, ni.NarSize)
	if err != nil {
		return "", fmt.Errorf("%s: %w", where, err)
	}
	committed = true
	s.listings.Add(p.Path.Hash, listing)
	if lied {
		return root, fmt.Errorf("%s: %w: %w", where, ErrCorrupt, errListingLied)
	}
	return root, nil
}

// localIOError reports failures of the local file system (ENOSPC, EIO of
// the cache dir, ...) as opposed to bad data from the cache.
func localIOError(err error) bool {
	var pe *os.PathError
	var le *os.LinkError
	return errors.As(err, &pe) || errors.As(err, &le)
}

// errListingLied marks a good NAR whose .ls listing was wrong: the caller
// may have acted on the wrong metadata, but the NAR is in the cache.
var errListingLied = errors.New("the cache's .ls listing disagrees with the NAR; the NAR's listing is used from now on")

// extract writes the NAR's tree at dst and returns its listing. For flat
// and text content addresses it feeds the root file's contents to caHash.
func extract(r io.Reader, dst string, ca *contentAddress, caHash hash.Hash) (*nar.Listing, error) {
	nr := nar.NewReader(r)
	var lb nar.ListingBuilder
	buf := make([]byte, 256<<10)
	for {
		h, err := nr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		lb.Add(h)
		p := filepath.Join(dst, filepath.FromSlash(h.Path))
		switch h.Type {
		case nar.TypeDirectory:
			err = os.Mkdir(p, 0o755)
		case nar.TypeSymlink:
			err = os.Symlink(h.LinkTarget, p)
		case nar.TypeRegular:
			var content io.Reader = nr
			if ca != nil && !ca.recursive {
				if h.Path != "" || h.Executable {
					return nil, fmt.Errorf("flat/text CA needs a single non-executable file")
				}
				content = io.TeeReader(nr, caHash)
			}
			err = writeFile(p, content, h, buf)
		}
		if err != nil {
			return nil, err
		}
	}
	l := lb.Listing()
	if l.Root == nil {
		return nil, fmt.Errorf("empty NAR")
	}
	if ca != nil && !ca.recursive && l.Root.Type != nar.TypeRegular {
		return nil, fmt.Errorf("flat/text CA on a path that is not a single file")
	}
	return l, nil
}

func writeFile(p string, content io.Reader, h *nar.Header, buf []byte) error {
	mode := os.FileMode(0o444)
	if h.Executable {
		mode = 0o555
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	n, err := io.CopyBuffer(f, content, buf)
	if err == nil && n != h.Size {
		err = fmt.Errorf("%s: short file contents", h.Path)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(p, mode)
	}
	return err
}

// verifier hashes and counts the decompressed NAR, refusing to read more
// than NarSize+1 bytes so a decompression bomb stops early.
type verifier struct {
	r     io.Reader
	limit int64
	n     int64
	sha   hash.Hash
	extra hash.Hash // CA hash of the whole NAR, when not sha256
}

func (v *verifier) Read(p []byte) (int, error) {
	if v.n > v.limit {
		return 0, fmt.Errorf("NAR is longer than NarSize %d", v.limit)
	}
	if max := v.limit + 1 - v.n; int64(len(p)) > max {
		p = p[:max]
	}
	n, err := v.r.Read(p)
	v.n += int64(n)
	v.sha.Write(p[:n])
	if v.extra != nil {
		v.extra.Write(p[:n])
	}
	return n, err
}

// drain reads what follows the NAR's last token: there must be nothing.
func (v *verifier) drain() error {
	n, err := io.Copy(io.Discard, v)
	if err != nil {
		return err
	}
	if n > 0 {
		return fmt.Errorf("%d bytes of trailing data after the NAR", n)
	}
	return nil
}

// errRecorder remembers the first error the upstream body returned, to
// tell network failures (retryable) from bad data (corrupt).
type errRecorder struct {
	r   io.Reader
	err error
}

func (e *errRecorder) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF && e.err == nil {
		e.err = err
	}
	return n, err
}
