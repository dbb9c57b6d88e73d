package fs

import (
	"context"
	"path"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/narfs/narfs/nar"
)

// dirNode is a directory inside a store path; its children come from the
// store path's listing as its storePathRef knows it (verified once the
// NAR was fetched).
type dirNode struct {
	fs.Inode
	ref *storePathRef
	sub string

	// The sorted entries of the listing node they were made from: every
	// OPENDIR of a walk (find, tar, ls -R: one per directory per walk)
	// hands them out again. A new listing node (verification) makes them
	// anew.
	mu      sync.Mutex
	listed  *nar.Node
	entries []fuse.DirEntry
}

// dir returns the directory's listing node with its entries.
func (d *dirNode) dir(ctx context.Context) (*nar.Node, syscall.Errno) {
	n, errno := d.ref.node(ctx, d.sub, true)
	if errno != 0 {
		return nil, errno
	}
	if n.Type != nar.TypeDirectory {
		// What was a directory when the kernel looked it up is not one in
		// the listing now: the first answer was a lie.
		return nil, syscall.ENOTDIR
	}
	return n, 0
}

var _ = (fs.NodeLookuper)((*dirNode)(nil))

func (d *dirNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (_ *fs.Inode, errno syscall.Errno) {
	defer observe(d.ref.st.metrics, "lookup", time.Now(), &errno)
	if len(name) > nar.MaxNameLen {
		// The kernel passes FUSE names longer than NAME_MAX (1024
		// bytes, more on newer kernels); no NAR holds one (Statfs says
		// 255), and ext4 answers so.
		return nil, syscall.ENAMETOOLONG
	}
	gen := d.ref.generation()
	n, errno := d.dir(ctx)
	if errno != 0 {
		return nil, errno
	}
	c := n.Entries[name]
	if c == nil {
		return nil, syscall.ENOENT
	}
	return d.ref.newChild(ctx, &d.Inode, path.Join(d.sub, name), c, gen, out), 0
}

var _ = (fs.NodeOpendirHandler)((*dirNode)(nil))

// OpendirHandle lets the kernel cache the directory's entries
// (FOPEN_CACHE_DIR): a store directory never changes, so repeated walks
// (find, ls -R) cost no READDIR round trips.
func (d *dirNode) OpendirHandle(ctx context.Context, flags uint32) (_ fs.FileHandle, _ uint32, errno syscall.Errno) {
	defer observe(d.ref.st.metrics, "opendir", time.Now(), &errno)
	dir, errno := d.dir(ctx)
	if errno != 0 {
		return nil, 0, errno
	}
	return fs.NewListDirStream(d.direntries(dir)), fuse.FOPEN_CACHE_DIR | fuse.FOPEN_KEEP_CACHE, 0
}

// direntries returns the entries of dir, sorted; callers only read them.
func (d *dirNode) direntries(dir *nar.Node) []fuse.DirEntry {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.listed == dir {
		return d.entries
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
	d.listed, d.entries = dir, entries
	return entries
}

var _ = (fs.NodeGetattrer)((*dirNode)(nil))

func (d *dirNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) (errno syscall.Errno) {
	defer observe(d.ref.st.metrics, "getattr", time.Now(), &errno)
	n, errno := d.ref.node(ctx, d.sub, false)
	if errno != 0 {
		return errno
	}
	fillAttr(&out.Attr, d.StableAttr().Ino, n)
	return 0
}

var _ = (fs.NodeOnForgetter)((*dirNode)(nil))

func (d *dirNode) OnForget() { d.ref.forgetRoot(d.sub) }
