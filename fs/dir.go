package fs

import (
	"context"
	"path"
	"sort"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/narfs/narfs/nar"
)

// dirNode is a directory inside a store path; its children come from the
// listing already in memory, so lookups do no I/O.
type dirNode struct {
	fs.Inode
	ref  *storePathRef
	sub  string
	node *nar.Node
}

var _ = (fs.NodeLookuper)((*dirNode)(nil))

func (d *dirNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	c := d.node.Entries[name]
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
	names := make([]string, 0, len(d.node.Entries))
	for n := range d.node.Entries {
		names = append(names, n)
	}
	sort.Strings(names)
	entries := make([]fuse.DirEntry, len(names))
	for i, n := range names {
		c := d.node.Entries[n]
		entries[i] = fuse.DirEntry{Name: n, Mode: fileMode(c), Ino: inodeNumber(d.ref.info.Path.Hash, path.Join(d.sub, n))}
	}
	return fs.NewListDirStream(entries), fuse.FOPEN_CACHE_DIR | fuse.FOPEN_KEEP_CACHE, 0
}

var _ = (fs.NodeGetattrer)((*dirNode)(nil))

func (d *dirNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	fillAttr(&out.Attr, d.StableAttr().Ino, d.node)
	return 0
}
