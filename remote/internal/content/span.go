package content

import (
	"fmt"
	"io"
	"os"

	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/remote/blob"
	"github.com/narfs/narfs/remote/internal/layout"
	"github.com/narfs/narfs/remote/internal/tune"
	"github.com/narfs/narfs/remote/localcache"
)

// Span is a verified regular file in the local cache: a file of its own
// (Base 0), or Size bytes at Base in a NAR blob.
type Span struct {
	File *os.File
	Base int64
	Size int64
	// release, when set, ends this reader's use of a File shared with
	// others (a warm blob) instead of closing it.
	release func()
}

// Own reports whether the file has a file of its own (the kernel can
// then read it directly).
func (f *Span) Own() bool { return f.Base == 0 }

// ReadAt reads the file's bytes at off.
func (f *Span) ReadAt(p []byte, off int64) (int, error) {
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
func (f *Span) Reader() io.Reader { return io.NewSectionReader(f, 0, f.Size) }

// Close closes the file, or ends this reader's share of it.
func (f *Span) Close() error {
	if f.release != nil {
		f.release()
		return nil
	}
	return f.File.Close()
}

// OpenSpan opens the regular file n of entry e, found as where in the
// entry's verified listing, whose NAR is narSize bytes. Which file is
// opened is decided by that listing only, and the open cannot follow a
// symlink or leave the entry. A large file's own copy is checked against
// its recorded hash (ErrOwnMismatch, ErrOwnUnrecorded).
func (s *Store) OpenSpan(e *localcache.Entry, n *nar.Node, narSize int64, where string) (*Span, error) {
	if n.Type != nar.TypeRegular {
		return nil, fmt.Errorf("%s: not a regular file", where)
	}
	name, base, want := blob.BlobFile, n.NarOffset, narSize
	if n.Size >= tune.OwnFileMin {
		name, base, want = layout.OwnFileName(n.NarOffset), 0, n.Size
	}
	if n.NarOffset <= 0 {
		return nil, fmt.Errorf("%s: %w: verified listing has no offset for the file", where, localcache.ErrLocal)
	}
	f, err := e.OpenRead(name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	if fi, err := f.Stat(); err != nil || fi.Size() != want || base > want-n.Size {
		f.Close()
		return nil, fmt.Errorf("%s: %w: local cache file does not match the verified listing", where, localcache.ErrLocal)
	}
	if name != blob.BlobFile {
		if err := s.checkOwn(e, name, f, n.Size); err != nil {
			f.Close()
			return nil, fmt.Errorf("%s: %w", where, err)
		}
	}
	return &Span{File: f, Base: base, Size: n.Size}, nil
}
