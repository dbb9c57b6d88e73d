package fs

import (
	"context"
	"log/slog"
	"path"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/remote"
)

// mountState is shared by every node of one mount.
type mountState struct {
	// read-only after Mount
	store       *remote.Store
	log         *slog.Logger
	passthrough bool

	mu       sync.Mutex          // protects the fields below
	resolved map[string]struct{} // base names looked up so far, for unlistable caches
}

// storePathRef is what every node of one store path shares.
type storePathRef struct {
	st   *mountState
	info *remote.PathInfo
}

// display is the absolute store path of a sub-path, for logs.
func (r *storePathRef) display(sub string) string {
	return path.Join(r.info.Abs(r.st.store.StoreDir()), sub)
}

// newChild makes (or finds) the inode for node n at sub inside a store path.
func (r *storePathRef) newChild(ctx context.Context, parent *fs.Inode, sub string, n *nar.Node, out *fuse.EntryOut) *fs.Inode {
	ino := inodeNumber(r.info.Path.Hash, sub)
	fillAttr(&out.Attr, ino, n)
	var emb fs.InodeEmbedder
	switch n.Type {
	case nar.TypeDirectory:
		d := &dirNode{ref: r, sub: sub}
		d.node.Store(n)
		emb = d
	case nar.TypeSymlink:
		emb = &symlinkNode{ref: r, sub: sub, node: n}
	default:
		emb = &fileNode{ref: r, sub: sub, node: n}
	}
	return parent.NewInode(ctx, emb, fs.StableAttr{Mode: fileMode(n) & syscall.S_IFMT, Ino: ino})
}
