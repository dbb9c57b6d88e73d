package fs

import (
	"context"
	"path"
	"sort"
	"sync/atomic"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/narfs/narfs/nar"
)

// dirNode is a directory inside a store path; its children come from the
// listing in memory. Only a store path's own root may start without its
// entries (known from the NAR's first header): they are loaded on first use.
type dirNode struct {
	fs.Inode
	ref  *storePathRef
	sub  string
	node atomic.Pointer[nar.Node]
}

// dir returns the directory's listing node, loading the store path's
// listing if this is a root known only by its header.
func (d *dirNode) dir(ctx context.Context) (*nar.Node, syscall.Errno) {
	n := d.node.Load()
	if n.Entries != nil {
		return n, 0
	}
	l, err := d.ref.st.store.Listing(ctx, d.ref.info)
	if err != nil {
		return nil, toErrno(d.ref.st.log, "listing", d.ref.display(d.sub), err)
	}
	if l.Root.Type != nar.TypeDirectory {
		// The NAR's first header said otherwise: the cache is lying.
		d.ref.st.log.Error("listing disagrees with the NAR header", "path", d.ref.display(d.sub))
		return nil, syscall.EIO
	}
	d.node.Store(l.Root)
	return l.Root, 0
}

var _ = (fs.NodeLookuper)((*dirNode)(nil))

func (d *dirNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	n, errno := d.dir(ctx)
	if errno != 0 {
		return nil, errno
	}
	c := n.Entries[name]
	if c == nil {
		return nil, syscall.ENOENT
	}
	return d.ref.newChild(ctx, &d.Inode, path.Join(d.sub, name), c, out), 0
}

var _ = (fs.NodeOpendirHandler)((*dirNode)(nil))

// OpendirHandle lets the kernel cache the directory's entries
// (FOPEN_CACHE_DIR): a store directory never changes, so repeated walks
// (find, ls -R) cost no READDIR round trips.
func (d *dirNode) OpendirHandle(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	dir, errno := d.dir(ctx)
	if errno != 0 {
		return nil, 0, errno
	}
	names := make([]string, 0, len(dir.Entries))
	for n := range dir.Entries {
		names = append(names, n)
	}
	sort.Strings(names)
	entries := make([]fuse.DirEntry, len(names))
	for i, n := range names {
		c := dir.Entries[n]
		entries[i] = fuse.DirEntry{Name: n, Mode: fileMode(c), Ino: inodeNumber(d.ref.info.Path.Hash, path.Join(d.sub, n))}
	}
	return fs.NewListDirStream(entries), fuse.FOPEN_CACHE_DIR | fuse.FOPEN_KEEP_CACHE, 0
}

var _ = (fs.NodeGetattrer)((*dirNode)(nil))

func (d *dirNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	fillAttr(&out.Attr, d.StableAttr().Ino, d.node.Load())
	return 0
}
