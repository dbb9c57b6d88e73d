package fs

import (
	"context"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
)

// sharedIdle is how long a node's shared handle stays open after its last
// read: long enough for the reads of one program's run, short enough not
// to pin cache entries against eviction for long.
const sharedIdle = 5 * time.Second

// sharedHandle is the one handle of a file that reads without OPEN use
// (Options.NoOpen): opened at the first read, as OPEN would have, shared
// by every reader of the inode (so sequential readahead still grows), and
// closed once idle for sharedIdle, when the kernel forgets the inode, or
// at unmount.
type sharedHandle struct {
	mu    sync.Mutex
	sem   chan struct{} // held by whoever opens the handle
	h     fs.FileHandle // nil when closed
	users int           // reads in progress
	idle  *time.Timer
}

// acquire returns the open handle, opening it if needed; the caller
// releases it when its read is done.
func (s *sharedHandle) acquire(ctx context.Context, f *fileNode) (_ fs.FileHandle, errno syscall.Errno) {
	s.mu.Lock()
	if s.h != nil {
		s.users++
		s.mu.Unlock()
		return s.h, 0
	}
	if s.sem == nil {
		s.sem = make(chan struct{}, 1)
	}
	sem := s.sem
	s.mu.Unlock()
	// One opener at a time; the others wait for it as they would for a
	// shared fetch, but never past their own interruption.
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		return nil, syscall.EINTR
	}
	defer func() { <-sem }()
	s.mu.Lock()
	if s.h != nil {
		s.users++
		s.mu.Unlock()
		return s.h, 0
	}
	s.mu.Unlock()
	defer observe(f.ref.st.metrics, "open", time.Now(), &errno)
	h, errno := f.open(ctx, true)
	if errno != 0 {
		return nil, errno
	}
	s.mu.Lock()
	s.h, s.users = h, 1
	s.mu.Unlock()
	f.ref.st.sharedOpened(f)
	return h, 0
}

// release ends a read; the last one starts the idle timer.
func (s *sharedHandle) release(f *fileNode) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users--
	if s.users > 0 {
		return
	}
	if s.idle == nil {
		s.idle = time.AfterFunc(sharedIdle, func() { s.close(f, false) })
	} else {
		s.idle.Reset(sharedIdle)
	}
}

// close releases the handle unless reads use it (force: the inode is
// gone, or the mount).
func (s *sharedHandle) close(f *fileNode, force bool) {
	s.mu.Lock()
	h := s.h
	if h == nil || (s.users > 0 && !force) {
		s.mu.Unlock()
		return
	}
	s.h = nil
	if s.idle != nil {
		s.idle.Stop()
	}
	s.mu.Unlock()
	f.ref.st.sharedClosed(f)
	if r, ok := h.(fs.FileReleaser); ok {
		r.Release(context.Background())
	}
}
