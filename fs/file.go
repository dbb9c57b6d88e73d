package fs

import (
	"context"
	"os"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/narfs/narfs/nar"
)

// fileNode is a regular file; opening it fetches and verifies its store
// path's NAR (once), then reads come from the local cache.
type fileNode struct {
	fs.Inode
	ref  *storePathRef
	sub  string
	node *nar.Node
}

var _ = (fs.NodeOpener)((*fileNode)(nil))

func (f *fileNode) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR|syscall.O_TRUNC|syscall.O_APPEND) != 0 {
		return nil, 0, syscall.EROFS
	}
	file, err := f.ref.st.store.OpenFile(ctx, f.ref.info, f.sub)
	if err != nil {
		return nil, 0, toErrno(f.ref.st.log, "open", f.ref.display(f.sub), err)
	}
	// The contents are immutable: keep the page cache across opens. There
	// is nothing to flush on close, so spare the kernel that round trip.
	const openFlags = fuse.FOPEN_KEEP_CACHE | fuse.FOPEN_NOFLUSH
	h := &fileHandle{file: file}
	if f.ref.st.passthrough && f.node.Size >= passthroughMinSize {
		return &passthroughHandle{h}, openFlags, 0
	}
	return h, openFlags, 0
}

var _ = (fs.NodeGetattrer)((*fileNode)(nil))

func (f *fileNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	fillAttr(&out.Attr, f.StableAttr().Ino, f.node)
	return 0
}

// passthroughMinSize: smaller files are served from the page cache
// (FOPEN_KEEP_CACHE) after one READ of at most maxRead bytes, which costs
// less than registering a backing file with the kernel on every open.
const passthroughMinSize = maxRead

// fileHandle reads a verified file of the local cache.
type fileHandle struct {
	file *os.File
}

var _ = (fs.FileReader)((*fileHandle)(nil))

func (h *fileHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	// Splices from the cached file when the kernel allows it.
	return fuse.ReadResultFd(h.file.Fd(), off, len(dest)), 0
}

var _ = (fs.FileReleaser)((*fileHandle)(nil))

func (h *fileHandle) Release(ctx context.Context) syscall.Errno {
	h.file.Close()
	return 0
}

// passthroughHandle also offers its descriptor to the kernel, which then
// serves reads itself (FUSE passthrough); go-fuse falls back to Read when
// the kernel or our privileges do not allow it.
type passthroughHandle struct {
	*fileHandle
}

var _ = (fs.FilePassthroughFder)((*passthroughHandle)(nil))

func (h *passthroughHandle) PassthroughFd() (int, bool) {
	return int(h.file.Fd()), true
}
