package remote

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
	// errOwnMismatch: a copy's contents differ from the recorded hash.
	errOwnMismatch = errors.New("a large file's copy in the local cache does not match the hash recorded when it was verified")
	// errOwnUnrecorded: a copy has no recorded hash (yet: another process
	// publishing it, or a crash between the two publications).
	errOwnUnrecorded = errors.New("a large file's copy in the local cache has no recorded hash")
)

// fileID is what must not change for a check to hold.
type fileID struct {
	dev, ino       uint64
	size           int64
	mtime, mtimeNs int64
	ctime, ctimeNs int64
}

func idOf(f *os.File) (fileID, error) {
	fi, err := f.Stat()
	if err != nil {
		return fileID{}, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, fmt.Errorf("%s: no stat", f.Name())
	}
	return fileID{dev: st.Dev, ino: st.Ino, size: st.Size, mtime: st.Mtim.Sec, mtimeNs: st.Mtim.Nsec, ctime: st.Ctim.Sec, ctimeNs: st.Ctim.Nsec}, nil
}

// ownChecks remembers the copies found (or written) right.
type ownChecks struct {
	mu sync.Mutex // protects m
	m  map[fileID]struct{}
}

func (o *ownChecks) has(id fileID) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	_, ok := o.m[id]
	return ok
}

func (o *ownChecks) add(id fileID) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.m == nil || len(o.m) >= tune.MaxOwnChecks {
		o.m = map[fileID]struct{}{}
	}
	o.m[id] = struct{}{}
}

// checkOwn checks the own file name of entry e, open as f, of size bytes,
// against its recorded hash, unless it was checked already. Failures wrap
// localcache.ErrLocal and errOwnMismatch or errOwnUnrecorded.
func (s *Store) checkOwn(e *localcache.Entry, name string, f *os.File, size int64) error {
	id, err := idOf(f)
	if err != nil {
		return fmt.Errorf("%s: %w: %w", name, localcache.ErrLocal, err)
	}
	if s.ownChecked.has(id) {
		return nil
	}
	rec, err := e.ReadMeta(layout.OwnSumName(name))
	if err != nil {
		return fmt.Errorf("%s: %w: %w (%v)", name, localcache.ErrLocal, errOwnUnrecorded, err)
	}
	want, err := hex.DecodeString(string(bytes.TrimSuffix(rec, []byte("\n"))))
	if err != nil || len(want) != sha256.Size {
		return fmt.Errorf("%s: %w: %w: bad record %q", name, localcache.ErrLocal, errOwnMismatch, rec)
	}
	h := sha256.New()
	n, err := io.Copy(h, io.NewSectionReader(f, 0, size+1))
	if err != nil {
		return fmt.Errorf("%s: %w: %w", name, localcache.ErrLocal, err)
	}
	if n != size || !bytes.Equal(h.Sum(nil), want) {
		return fmt.Errorf("%s: %w: %w", name, localcache.ErrLocal, errOwnMismatch)
	}
	s.ownChecked.add(id)
	return nil
}

// trustWritten marks the own files a fetch wrote as checked, if they are
// the ones in the committed entry (another process may have committed
// its copy first: those are checked when opened).
func (s *Store) trustWritten(e *localcache.Entry, ws []ownWritten) {
	for _, w := range ws {
		f, err := e.OpenRead(w.name)
		if err != nil {
			continue
		}
		if id, err := idOf(f); err == nil && id == w.id {
			s.ownChecked.add(id)
		}
		f.Close()
	}
}
