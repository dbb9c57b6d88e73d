package fs

import (
	"context"
	"errors"
	"sort"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/remote"
)

// rootNode is the store directory: children are store paths, resolved
// lazily by name.
type rootNode struct {
	fs.Inode
	st *mountState
}

var _ = (fs.NodeLookuper)((*rootNode)(nil))

func (r *rootNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (_ *fs.Inode, errno syscall.Errno) {
	defer observe(r.st.metrics, "lookup", time.Now(), &errno)
	if len(name) > nar.MaxNameLen {
		return nil, syscall.ENAMETOOLONG // as in dirNode.Lookup
	}
	info, err := r.st.store.Resolve(ctx, name)
	if err != nil {
		return nil, toErrno(r.st.log, "lookup", name, err)
	}
	// Only the root node is needed here; a directory's entries come when
	// it is first read, so stat of a path never costs its whole NAR.
	gen := r.st.store.Gen(info)
	root, err := r.st.store.Root(ctx, info)
	if err != nil {
		return nil, toErrno(r.st.log, "lookup", name, err)
	}
	r.st.mu.Lock()
	r.st.resolved[name] = struct{}{}
	r.st.mu.Unlock()
	return r.st.ref(info).newChild(ctx, &r.Inode, "", root, gen, out), 0
}

var _ = (fs.NodeReaddirer)((*rootNode)(nil))

// Readdir lists every trusted path of a listable cache, or the paths
// looked up so far when the cache cannot be listed (HTTP).
func (r *rootNode) Readdir(ctx context.Context) (_ fs.DirStream, errno syscall.Errno) {
	defer observe(r.st.metrics, "readdir", time.Now(), &errno)
	names := map[string]struct{}{}
	err := r.st.store.Paths(ctx, func(p *remote.PathInfo) {
		names[p.Path.String()] = struct{}{}
	})
	switch {
	case err == nil || errors.Is(err, remote.ErrNotListable):
	case errors.Is(err, context.DeadlineExceeded):
		// Listing and resolving a large cache can take longer than
		// --timeout: what was found by then is still a listing, as the
		// root over HTTP lists only what was looked up.
		r.st.log.Warn("listing the store's root took longer than --timeout; it shows the paths found until then",
			"paths", len(names), "err", err)
	default:
		return nil, toErrno(r.st.log, "readdir", r.st.store.StoreDir(), err)
	}
	r.st.mu.Lock()
	for n := range r.st.resolved {
		names[n] = struct{}{}
	}
	r.st.mu.Unlock()
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)
	// The type of each entry would need its listing; DT_UNKNOWN makes
	// readers that care stat, which resolves lazily.
	entries := make([]fuse.DirEntry, len(sorted))
	for i, n := range sorted {
		entries[i] = fuse.DirEntry{Name: n, Ino: inodeNumber(hashPart(n), "")}
	}
	return fs.NewListDirStream(entries), 0
}

var _ = (fs.NodeGetattrer)((*rootNode)(nil))

func (r *rootNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) (errno syscall.Errno) {
	defer observe(r.st.metrics, "getattr", time.Now(), &errno)
	fillDirAttr(&out.Attr, 1)
	return 0
}

var _ = (fs.NodeStatfser)((*rootNode)(nil))

// Statfs reports the local cache's usage as the size of a full,
// read-only file system.
func (r *rootNode) Statfs(ctx context.Context, out *fuse.StatfsOut) (errno syscall.Errno) {
	defer observe(r.st.metrics, "statfs", time.Now(), &errno)
	used := uint64(r.st.store.Stats().CacheBytes) / blockSize
	out.Bsize = blockSize
	out.Frsize = blockSize
	out.Blocks = used
	out.NameLen = 255
	return 0
}

func hashPart(base string) string {
	if len(base) > 32 {
		return base[:32]
	}
	return base
}
