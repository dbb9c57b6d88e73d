package fs

import (
	"context"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/narfs/narfs/nar"
)

// symlinkNode is a symlink; its target is in the listing.
type symlinkNode struct {
	fs.Inode
	ref  *storePathRef
	sub  string
	node *nar.Node
}

var _ = (fs.NodeReadlinker)((*symlinkNode)(nil))

func (s *symlinkNode) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	return []byte(s.node.Target), 0
}

var _ = (fs.NodeGetattrer)((*symlinkNode)(nil))

func (s *symlinkNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	fillAttr(&out.Attr, s.StableAttr().Ino, s.node)
	return 0
}
