package content

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"

	"github.com/narfs/narfs/remote/internal/layout"
	"github.com/narfs/narfs/remote/internal/tune"
	"github.com/narfs/narfs/remote/localcache"
)

// A large file's own copy in a local cache entry (layout.OwnFileName) is served
// whole, by passthrough too, so its bytes are never checked on the way
// out: it is checked once before it is first served, against the SHA-256
// of its contents recorded beside it (layout.OwnSumName) when they were verified
// (as part of the NAR, or chunk by chunk against the signed index). The
// record is trusted because the cache dir is narfs's own (localcache
// refuses one another user could write); the copy is not trusted for its
// size. A check holds for a file while its identity (device, inode, size,
// mtime, ctime) is unchanged; a copy this process has just written and
// verified needs none.

var (
	// ErrOwnMismatch: a copy's contents differ from the recorded hash.
	ErrOwnMismatch = errors.New("a large file's copy in the local cache does not match the hash recorded when it was verified")
	// ErrOwnUnrecorded: a copy has no recorded hash (yet: another process
	// publishing it, or a crash between the two publications).
	ErrOwnUnrecorded = errors.New("a large file's copy in the local cache has no recorded hash")
)

// FileID is what must not change for a check to hold.
type FileID struct {
	dev, ino       uint64
	size           int64
	mtime, mtimeNs int64
	ctime, ctimeNs int64
}

// IDOf is f's identity, for a check.
func IDOf(f *os.File) (FileID, error) {
	fi, err := f.Stat()
	if err != nil {
		return FileID{}, err
	}
	id, ok := FileIDOf(fi)
	if !ok {
		return FileID{}, fmt.Errorf("%s: no stat", f.Name())
	}
	return id, nil
}

// FileIDOf is the identity of the file fi describes (false: fi carries
// no stat), as IDOf makes it of an open file: fetch's own files are
// marked with it after they are written.
func FileIDOf(fi os.FileInfo) (FileID, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return FileID{}, false
	}
	return FileID{dev: st.Dev, ino: st.Ino, size: st.Size, mtime: st.Mtim.Sec, mtimeNs: st.Mtim.Nsec, ctime: st.Ctim.Sec, ctimeNs: st.Ctim.Nsec}, true
}

// ownChecks remembers the copies found (or written) right.
type ownChecks struct {
	mu sync.Mutex // protects m
	m  map[FileID]struct{}
}

func (o *ownChecks) has(id FileID) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	_, ok := o.m[id]
	return ok
}

func (o *ownChecks) add(id FileID) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.m == nil || len(o.m) >= tune.MaxOwnChecks {
		o.m = map[FileID]struct{}{}
	}
	o.m[id] = struct{}{}
}

// checkOwn checks the own file name of entry e, open as f, of size bytes,
// against its recorded hash, unless it was checked already. Failures wrap
// localcache.ErrLocal and ErrOwnMismatch or ErrOwnUnrecorded.
func (s *Store) checkOwn(e *localcache.Entry, name string, f *os.File, size int64) error {
	id, err := IDOf(f)
	if err != nil {
		return fmt.Errorf("%s: %w: %w", name, localcache.ErrLocal, err)
	}
	if s.own.has(id) {
		return nil
	}
	rec, err := e.ReadMeta(layout.OwnSumName(name))
	if err != nil {
		return fmt.Errorf("%s: %w: %w (%v)", name, localcache.ErrLocal, ErrOwnUnrecorded, err)
	}
	want, err := hex.DecodeString(string(bytes.TrimSuffix(rec, []byte("\n"))))
	if err != nil || len(want) != sha256.Size {
		return fmt.Errorf("%s: %w: %w: bad record %q", name, localcache.ErrLocal, ErrOwnMismatch, rec)
	}
	h := sha256.New()
	n, err := io.Copy(h, io.NewSectionReader(f, 0, size+1))
	if err != nil {
		return fmt.Errorf("%s: %w: %w", name, localcache.ErrLocal, err)
	}
	if n != size || !bytes.Equal(h.Sum(nil), want) {
		return fmt.Errorf("%s: %w: %w", name, localcache.ErrLocal, ErrOwnMismatch)
	}
	s.own.add(id)
	return nil
}

// published marks as checked the own file name of entry e that this
// process wrote from verified bytes under another name, as id, and
// renamed into place (PublishData), if it is the one there: the rename
// changed its ctime, nothing else.
func (s *Store) published(e *localcache.Entry, name string, id FileID) {
	f, err := e.OpenRead(name)
	if err != nil {
		return
	}
	defer f.Close()
	got, err := IDOf(f)
	if err != nil {
		return
	}
	id.ctime, id.ctimeNs = got.ctime, got.ctimeNs
	if got == id {
		s.own.add(got)
	}
}

// Written marks as checked the own file name of entry e that this
// process wrote from verified bytes as id, if it is the one in the
// committed entry (another process may have committed its copy first:
// those are checked when opened).
func (s *Store) Written(e *localcache.Entry, name string, id FileID) {
	f, err := e.OpenRead(name)
	if err != nil {
		return
	}
	if got, err := IDOf(f); err == nil && got == id {
		s.own.add(id)
	}
	f.Close()
}
