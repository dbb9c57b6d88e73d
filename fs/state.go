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
	store       *remote.Substituters
	log         *slog.Logger
	passthrough bool
	noOpen      bool // Options.NoOpen
	metrics     Metrics
	root        *rootNode

	sharedMu sync.Mutex             // protects shared
	shared   map[*fileNode]struct{} // nodes whose shared handle is open

	mu       sync.Mutex               // protects the fields below
	resolved map[string]struct{}      // base names looked up so far, for unlistable caches
	refs     map[string]*storePathRef // hash part → the store path's shared state
}

func newMountState(store *remote.Substituters, log *slog.Logger, o Options) *mountState {
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
	store.OnVerified(st.onVerified)
	return st
}

// ref returns the one storePathRef of a store path, made from what a
// lookup just learned if there is none yet.
func (st *mountState) ref(info *remote.PathInfo, root *nar.Node) *storePathRef {
	st.mu.Lock()
	defer st.mu.Unlock()
	if r, ok := st.refs[info.Path.Hash]; ok && r.info.Path == info.Path {
		return r
	}
	r := &storePathRef{st: st, info: info, root: root}
	st.refs[info.Path.Hash] = r
	return r
}

// forget drops a store path's state once the kernel forgot its root.
func (st *mountState) forget(r *storePathRef) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.refs[r.info.Path.Hash] == r {
		delete(st.refs, r.info.Path.Hash)
	}
}

// onVerified runs on the fetching goroutine when a NAR is verified: the
// path's nodes answer from its listing from now on, and if anything they
// answered before differs, the kernel's caches of it are dropped.
func (st *mountState) onVerified(info *remote.PathInfo, l *nar.Listing) {
	st.mu.Lock()
	r := st.refs[info.Path.Hash]
	st.mu.Unlock()
	if r == nil || r.info.Path != info.Path {
		return
	}
	if r.setVerified(l) {
		// Asynchronously: the kernel takes directory locks to drop
		// entries, and a LOOKUP holding one may be waiting for this very
		// fetch.
		go st.invalidate(r)
	}
}

// invalidate makes the kernel forget every entry, attribute and cached
// directory or link target of a store path, so that it asks again and
// gets the verified answers; it closes r.invalidated when done. A
// regular file's pages are left alone: they are only ever read after
// verification, so none came from the lie, and dropping them would wait
// for the page a read of that very file (the one that found the lie) is
// filling. That is what lets a file's open wait for this walk.
func (st *mountState) invalidate(r *storePathRef) {
	defer close(r.invalidated)
	st.log.Warn("dropping the kernel's caches of metadata the verified NAR contradicts", "path", r.display(""))
	top := st.root.GetChild(r.info.Path.String())
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
	st.root.NotifyEntry(r.info.Path.String())
}

// waitInvalidated waits until the kernel was told to forget what the
// lie made it cache, so that no notification of it lands after the
// caller's answer (one that lands during a GETATTR makes the kernel drop
// the fresh attributes and size reads by the stale ones).
func (r *storePathRef) waitInvalidated(ctx context.Context) {
	r.mu.Lock()
	ch := r.invalidated
	r.mu.Unlock()
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

// storePathRef is what every node of one store path shares: the one
// place that knows what the mount says about the path, and whether that
// is verified.
type storePathRef struct {
	st   *mountState
	info *remote.PathInfo // read-only

	mu       sync.Mutex   // protects the fields below
	root     *nar.Node    // the root as first learned (a listing or the NAR's first header)
	listing  *nar.Listing // nil until a directory's entries are needed
	verified bool         // listing is the verified NAR's
	gen      uint64       // bumped when verification changed an answer
	// invalidated is closed once the kernel's caches of what verification
	// changed are dropped (nil: nothing changed).
	invalidated chan struct{}
}

// display is the absolute store path of a sub-path, for logs.
func (r *storePathRef) display(sub string) string {
	return path.Join(r.info.Abs(r.st.store.StoreDir()), sub)
}

// node returns the node at sub as best known, loading the listing when
// the node is not the root or its entries are needed.
func (r *storePathRef) node(ctx context.Context, sub string, entries bool) (*nar.Node, syscall.Errno) {
	r.mu.Lock()
	l, root := r.listing, r.root
	r.mu.Unlock()
	if l == nil && sub == "" && (!entries || root.Type != nar.TypeDirectory || root.Entries != nil) {
		return root, 0
	}
	if l == nil {
		var err error
		if l, err = r.st.store.Listing(ctx, r.info); err != nil {
			return nil, toErrno(r.st.log, "listing", r.display(sub), err)
		}
		r.mu.Lock()
		if r.listing == nil {
			r.listing = l
		}
		l = r.listing
		r.mu.Unlock()
	}
	n, err := l.Find(sub)
	if err != nil {
		return nil, syscall.ENOENT
	}
	return n, 0
}

// generation is read before answering a lookup; if it moved by the time
// the answer is ready, the answer may predate verification and must not
// be cached by the kernel.
func (r *storePathRef) generation() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.gen
}

// setVerified installs the verified listing and reports whether it
// contradicts anything answered before.
func (r *storePathRef) setVerified(l *nar.Listing) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.verified {
		return false
	}
	changed := !sameRoot(r.root, l.Root) || r.listing != nil && !nar.SameTree(r.listing.Root, l.Root)
	r.listing, r.root, r.verified = l, l.Root, true
	if changed {
		r.gen++
		r.invalidated = make(chan struct{})
	}
	return changed
}

// sameRoot compares a root learned from a NAR header (no entries) with
// the verified one.
func sameRoot(a, b *nar.Node) bool {
	if a.Type == nar.TypeDirectory && a.Entries == nil {
		return b.Type == nar.TypeDirectory
	}
	return nar.SameTree(a, b)
}

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
