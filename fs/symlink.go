package fs

import (
	"context"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/narfs/narfs/nar"
)

// symlinkNode is a symlink; its target is in the listing. A store path
// that is a single symlink was verified before its lookup answered.
type symlinkNode struct {
	fs.Inode
	ref *storePathRef
	sub string
}

var _ = (fs.NodeReadlinker)((*symlinkNode)(nil))

func (s *symlinkNode) Readlink(ctx context.Context) (_ []byte, errno syscall.Errno) {
	defer observe(s.ref.st.metrics, "readlink", time.Now(), &errno)
	n, errno := s.ref.node(ctx, s.sub, false)
	if errno != 0 {
		return nil, errno
	}
	if n.Type != nar.TypeSymlink {
		return nil, syscall.EIO
	}
	return []byte(n.Target), 0
}

var _ = (fs.NodeGetattrer)((*symlinkNode)(nil))

func (s *symlinkNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) (errno syscall.Errno) {
	defer observe(s.ref.st.metrics, "getattr", time.Now(), &errno)
	n, errno := s.ref.node(ctx, s.sub, false)
	if errno != 0 {
		return errno
	}
	fillAttr(&out.Attr, s.StableAttr().Ino, n)
	return 0
}

var _ = (fs.NodeOnForgetter)((*symlinkNode)(nil))

func (s *symlinkNode) OnForget() { s.ref.forgetRoot(s.sub) }
