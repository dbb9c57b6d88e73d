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

// Lock order: mountState.mu, mountState.sharedMu and storePathRef.mu are
// never held together. mountState.mu is held across Core.Forget only (the
// core's path table lock is a leaf that calls nothing back); no other
// call into the core runs under an fs mutex. fileNode.ioMu (file.go),
// dirNode.mu (dir.go) and sharedHandle.mu (shared.go) are leaves.

// mountState is shared by every node of one mount.
type mountState struct {
	// read-only after Mount
	store       *remote.Core
	log         *slog.Logger
	passthrough bool
	noOpen      bool // Options.NoOpen
	metrics     Metrics
	root        *rootNode
	unsubscribe func()

	sharedMu sync.Mutex             // protects shared
	shared   map[*fileNode]struct{} // nodes whose shared handle is open

	mu       sync.Mutex               // protects the fields below
	resolved map[string]struct{}      // base names looked up so far, for unlistable caches
	refs     map[string]*storePathRef // hash part → the store path's shared state
}

func newMountState(store *remote.Core, log *slog.Logger, o Options) *mountState {
	m := o.Metrics
	if m == nil {
		m = noMetrics{}
	}
	st := &mountState{
		store: store, log: log, passthrough: o.Passthrough && !o.NoOpen, noOpen: o.NoOpen, metrics: m,
		resolved: map[string]struct{}{},
		refs:     map[string]*storePathRef{},
		shared:   map[*fileNode]struct{}{},
	}
	st.root = &rootNode{st: st}
	st.unsubscribe = store.Subscribe(st.onGen)
	return st
}

// ref returns the one storePathRef of a store path, made if there is
// none yet.
func (st *mountState) ref(info *remote.PathInfo) *storePathRef {
	st.mu.Lock()
	defer st.mu.Unlock()
	if r, ok := st.refs[info.Path.Hash]; ok && r.info.Path == info.Path {
		return r
	}
	r := &storePathRef{st: st, info: info}
	st.refs[info.Path.Hash] = r
	return r
}

// forget drops a store path's state once the kernel forgot its root, and
// tells the core that nothing it handed of the path is shown any more.
func (st *mountState) forget(r *storePathRef) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.refs[r.info.Path.Hash] == r {
		delete(st.refs, r.info.Path.Hash)
		// Under mu: a lookup making the path's next ref (under mu too)
		// must not lose what the core records for it.
		st.store.Forget(r.info)
	}
}

// onGen runs on the verifying goroutine when a verified listing
// contradicts metadata the core handed out of a path: the kernel's
// caches of the path are dropped.
func (st *mountState) onGen(hash string, gen uint64) {
	st.mu.Lock()
	r := st.refs[hash]
	st.mu.Unlock()
	if r != nil {
		r.moved(gen)
	}
}

// moved starts dropping the kernel's caches of the path for generation
// gen, unless that was started already (by onGen or by an open that saw
// the generation first), and returns the channel closed when done.
func (r *storePathRef) moved(gen uint64) chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	if gen > r.gen {
		r.gen = gen
		r.invalidated = make(chan struct{})
		// Asynchronously: the kernel takes directory locks to drop
		// entries, and a LOOKUP holding one may be waiting for this very
		// fetch.
		go r.st.invalidate(r.info, r.invalidated)
	}
	return r.invalidated
}

// invalidate makes the kernel forget every entry, attribute and cached
// directory or link target of a store path, so that it asks again and
// gets the verified answers; it closes done when done. A regular file's
// pages are left alone: they are only ever read after verification, so
// none came from the lie, and dropping them would wait for the page a
// read of that very file (the one that found the lie) is filling. That
// is what lets a file's open wait for this walk.
func (st *mountState) invalidate(info *remote.PathInfo, done chan struct{}) {
	defer close(done)
	name := info.Path.String()
	st.log.Warn("dropping the kernel's caches of metadata the verified NAR contradicts", "path", info.Abs(st.store.StoreDir()))
	top := st.root.GetChild(name)
	if top == nil {
		return
	}
	var walk func(in *fs.Inode)
	walk = func(in *fs.Inode) {
		for name, c := range in.Children() {
			walk(c)
			in.NotifyEntry(name)
		}
		if in.Mode()&syscall.S_IFMT == syscall.S_IFREG {
			in.NotifyContent(-1, 0) // an offset of -1: the attributes only
		} else {
			in.NotifyContent(0, 0)
		}
	}
	walk(top)
	st.root.NotifyEntry(name)
}

// waitInvalidated waits until the kernel was told to forget what the
// lie made it cache up to generation gen, so that no notification of it
// lands after the caller's answer (one that lands during a GETATTR makes
// the kernel drop the fresh attributes and size reads by the stale
// ones). The core moves a generation before it tells its subscribers:
// if the caller saw gen first, it starts the walk itself.
func (r *storePathRef) waitInvalidated(ctx context.Context, gen uint64) {
	ch := r.moved(gen)
	if ch == nil {
		return
	}
	// The walk waits only for directory locks, which the kernel holds
	// for lookups bounded by --timeout themselves; bound this wait too.
	ctx, cancel := r.st.store.OpContext(ctx)
	defer cancel()
	select {
	case <-ch:
	case <-ctx.Done():
	}
}

// storePathRef is what every node of one store path shares. What the
// mount says about the path is the core's (Root, Lookup); the ref only
// follows the path's generation there, to drop the kernel's caches when
// a verified listing contradicted an earlier answer.
type storePathRef struct {
	st   *mountState
	info *remote.PathInfo // read-only

	mu  sync.Mutex // protects the fields below
	gen uint64     // the generation whose invalidation was started
	// invalidated is closed once the kernel's caches of what verification
	// changed are dropped (nil: nothing changed).
	invalidated chan struct{}
}

// display is the absolute store path of a sub-path, for logs.
func (r *storePathRef) display(sub string) string {
	return path.Join(r.info.Abs(r.st.store.StoreDir()), sub)
}

// node returns the node at sub as the core knows it; entries: a
// directory's entries are needed (a root otherwise comes from Root,
// which for a directory may have none: stat of a path never costs its
// whole listing).
func (r *storePathRef) node(ctx context.Context, sub string, entries bool) (*nar.Node, syscall.Errno) {
	if sub == "" && !entries {
		n, err := r.st.store.Root(ctx, r.info)
		if err != nil {
			return nil, toErrno(r.st.log, "lookup", r.display(sub), err)
		}
		return n, 0
	}
	n, err := r.st.store.Lookup(ctx, r.info, sub)
	if err != nil {
		return nil, toErrno(r.st.log, "listing", r.display(sub), err)
	}
	return n, 0
}

// generation is read before answering from the path's metadata; if it
// moved by the time the answer is ready, the answer may predate
// verification and must not be cached by the kernel.
func (r *storePathRef) generation() uint64 { return r.st.store.Gen(r.info) }

// newChild makes (or finds) the inode for node n at sub inside a store path.
func (r *storePathRef) newChild(ctx context.Context, parent *fs.Inode, sub string, n *nar.Node, gen uint64, out *fuse.EntryOut) *fs.Inode {
	ino := inodeNumber(r.info.Path.Hash, sub)
	fillAttr(&out.Attr, ino, n)
	if r.generation() != gen {
		out.SetEntryTimeout(0)
		out.SetAttrTimeout(0)
	}
	var emb fs.InodeEmbedder
	switch n.Type {
	case nar.TypeDirectory:
		emb = &dirNode{ref: r, sub: sub}
	case nar.TypeSymlink:
		emb = &symlinkNode{ref: r, sub: sub}
	default:
		f := &fileNode{ref: r, sub: sub}
		f.gen.Store(gen)
		emb = f
	}
	return parent.NewInode(ctx, emb, fs.StableAttr{Mode: fileMode(n) & syscall.S_IFMT, Ino: ino})
}

// forgetRoot is every node's OnForget: the root of a store path takes its
// shared state with it.
func (r *storePathRef) forgetRoot(sub string) {
	if sub == "" {
		r.st.forget(r)
	}
}

func (st *mountState) sharedOpened(f *fileNode) {
	st.sharedMu.Lock()
	st.shared[f] = struct{}{}
	st.sharedMu.Unlock()
}

func (st *mountState) sharedClosed(f *fileNode) {
	st.sharedMu.Lock()
	delete(st.shared, f)
	st.sharedMu.Unlock()
}

// closeShared closes every shared handle, once the mount serves no more
// reads and before the store closes.
func (st *mountState) closeShared() {
	st.sharedMu.Lock()
	nodes := make([]*fileNode, 0, len(st.shared))
	for f := range st.shared {
		nodes = append(nodes, f)
	}
	st.sharedMu.Unlock()
	for _, f := range nodes {
		f.shared.close(f, true)
	}
}
