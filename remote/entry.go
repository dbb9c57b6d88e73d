package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/remote/blob"
	"github.com/narfs/narfs/remote/internal/layout"
	"github.com/narfs/narfs/remote/internal/trust"
	"github.com/narfs/narfs/remote/internal/tune"
	"github.com/narfs/narfs/remote/localcache"
)

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
		name, base, want = layout.OwnFileName(n.NarOffset), 0, n.Size
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
	data, err := e.ReadMeta(layout.ListingMeta)
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
