package fs

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/remote"
)

// fileNode is a regular file; opening it fetches and verifies its store
// path's NAR (once), then reads come from the local cache.
type fileNode struct {
	fs.Inode
	ref *storePathRef
	sub string
	gen atomic.Uint64 // the ref's generation the kernel's attributes come from

	// The kernel refuses (EIO) to have one inode open with passthrough
	// and with cached reads at once. A large file of an indexed path is
	// read through narfs until it is complete and by passthrough after,
	// so while handles are open, new ones take their mode.
	ioMu     sync.Mutex
	opens    int  // handles open, until their RELEASE
	passthru bool // their mode, while opens > 0

	shared sharedHandle // reads without OPEN (Options.NoOpen)

	// cached: the file's verified contents were given to the kernel's
	// page cache at an OPEN (storeContents), which keeps them across
	// opens (FOPEN_KEEP_CACHE); later opens need not give them again.
	cached atomic.Bool
}

// admit counts a new handle and says whether it may use passthrough
// (want: it could).
func (f *fileNode) admit(want bool) bool {
	f.ioMu.Lock()
	defer f.ioMu.Unlock()
	if f.opens > 0 {
		want = want && f.passthru
	}
	f.opens++
	f.passthru = want
	return want
}

// released ends a handle counted by admit.
func (f *fileNode) released() {
	f.ioMu.Lock()
	defer f.ioMu.Unlock()
	f.opens--
}

// display is the file's absolute path, for logs (made only when one is
// written: opens are hot).
func (f *fileNode) display() string { return f.ref.display(f.sub) }

var _ = (fs.NodeOpener)((*fileNode)(nil))

func (f *fileNode) Open(ctx context.Context, flags uint32) (_ fs.FileHandle, _ uint32, errno syscall.Errno) {
	defer observe(f.ref.st.metrics, "open", time.Now(), &errno)
	if flags&(syscall.O_WRONLY|syscall.O_RDWR|syscall.O_TRUNC|syscall.O_APPEND) != 0 {
		return nil, 0, syscall.EROFS
	}
	if f.ref.st.noOpen {
		// The kernel stops sending OPEN and RELEASE for every file of the
		// mount, keeps the page cache across opens, and reads come with
		// no handle (Read).
		return nil, 0, syscall.ENOSYS
	}
	// The contents are immutable: keep the page cache across opens. There
	// is nothing to flush on close, so spare the kernel that round trip.
	const openFlags = fuse.FOPEN_KEEP_CACHE | fuse.FOPEN_NOFLUSH
	h, errno := f.open(ctx, false)
	return h, openFlags, errno
}

// open makes a handle on the file's verified contents. shared: for reads
// without OPEN, where the kernel asked nothing before the read and no
// handle can use passthrough.
func (f *fileNode) open(ctx context.Context, shared bool) (fs.FileHandle, syscall.Errno) {
	r := f.ref
	// Indexed (nothing is fetched until a read, and then only the chunks
	// it covers) or the verified NAR: the core decides.
	file, err := r.st.store.Open(ctx, r.info, f.sub)
	if err != nil {
		return nil, toErrno(r.st.log, "open", r.display(f.sub), err)
	}
	if g := r.generation(); f.gen.Swap(g) != g {
		// The size the kernel holds may be a lie's; it caps reads at it.
		// Its attributes are dropped by the path's invalidation; wait for
		// it, so that none of its notifications lands after this answer.
		r.waitInvalidated(ctx, g)
		if shared {
			// This read was sized by the lie: fail it rather than answer
			// what the lie chose. The reader's next try asks for the
			// attributes again and sees the verified size.
			file.Close()
			r.st.log.Error("the file's size was not what the unsigned .ls said; this read fails, the next ones see the verified file", "path", f.display())
			return nil, syscall.EIO
		}
	}
	h := &fileHandle{f: file, m: r.st.metrics, log: r.st.log, node: f}
	// A large file with a copy of its own (fetched completely before):
	// read by the kernel itself where passthrough is on. (While
	// passthrough opens of an indexed file run, it has its own copy.)
	if f.admit(r.st.passthrough && !shared && file.Passthrough() != nil) {
		return &passthroughHandle{h}, 0
	}
	if !shared {
		// Only what is already here: an open fetches nothing.
		f.storeContents(file.Node().Size, h.m, func(p []byte) bool { _, ok := file.ReadCached(p); return ok })
	}
	return h, 0
}

// storeContents gives a small file's verified contents (below maxRead;
// read by read into a buffer of size bytes) to the kernel's page cache before the OPEN is
// answered, once per inode: the reads that follow are then answered by
// the kernel itself, which spares a READ round trip per file (a third of
// what a cold walk of many small files costs). A file not stored (read
// said no), or evicted later, is read as usual.
func (f *fileNode) storeContents(size int64, m Metrics, read func(p []byte) bool) {
	if size <= 0 || size >= maxRead || !f.cached.CompareAndSwap(false, true) {
		return
	}
	pool := &storeBufs[0]
	if size > smallStore {
		pool = &storeBufs[1]
	}
	bp := pool.Get().(*[]byte)
	defer pool.Put(bp)
	buf := (*bp)[:size]
	if !read(buf) {
		// Not here yet, or a failure the READs that follow report.
		f.cached.Store(false)
		return
	}
	if errno := f.WriteCache(0, buf); errno != 0 {
		f.cached.Store(false)
		f.ref.st.log.Debug("the kernel did not take a file's contents", "path", f.display(), "err", errno)
		return
	}
	m.Served(size)
}

// storeBufs hold a file's contents while storeContents hands them to the
// kernel: most files are small, the rest below maxRead.
var storeBufs = [2]sync.Pool{
	{New: func() any { b := make([]byte, smallStore); return &b }},
	{New: func() any { b := make([]byte, maxRead); return &b }},
}

const smallStore = 64 << 10

var _ = (fs.NodeReader)((*fileNode)(nil))

// Read serves reads: through the handle of an OPEN, or, without OPEN
// (Options.NoOpen), through the node's shared handle.
func (f *fileNode) Read(ctx context.Context, fh fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if fh != nil {
		return fh.(fs.FileReader).Read(ctx, dest, off)
	}
	h, errno := f.shared.acquire(ctx, f)
	if errno != 0 {
		return nil, errno
	}
	defer f.shared.release(f)
	return h.(fs.FileReader).Read(ctx, dest, off)
}

var _ = (fs.NodeFlusher)((*fileNode)(nil))

// Flush answers ENOSYS, after which the kernel sends no FLUSH at all: the
// files are read-only. (Handles of OPEN carry FOPEN_NOFLUSH; opens
// without OPEN would otherwise flush at every close.)
func (f *fileNode) Flush(ctx context.Context, fh fs.FileHandle) syscall.Errno {
	return syscall.ENOSYS
}

var _ = (fs.NodeGetattrer)((*fileNode)(nil))

func (f *fileNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) (errno syscall.Errno) {
	defer observe(f.ref.st.metrics, "getattr", time.Now(), &errno)
	n, errno := f.ref.node(ctx, f.sub, false)
	if errno != 0 {
		return errno
	}
	if n.Type != nar.TypeRegular {
		return syscall.ENOENT
	}
	fillAttr(&out.Attr, f.StableAttr().Ino, n)
	return 0
}

var _ = (fs.NodeOnForgetter)((*fileNode)(nil))

func (f *fileNode) OnForget() {
	f.shared.close(f, true)
	f.ref.forgetRoot(f.sub)
}

// fileHandle reads a verified file: by chunks of an indexed path (each
// read fetches and verifies the chunks it covers, and some ahead), from
// the file's own copy, or from a range of its NAR's blob in the local
// cache.
type fileHandle struct {
	f    *remote.File
	m    Metrics
	log  *slog.Logger
	node *fileNode // its display is the name in logs
}

var _ = (fs.FileReader)((*fileHandle)(nil))

func (h *fileHandle) Read(ctx context.Context, dest []byte, off int64) (_ fuse.ReadResult, errno syscall.Errno) {
	defer observe(h.m, "read", time.Now(), &errno)
	// Read, not spliced: go-fuse takes a short splice for the end of the
	// file, and the kernel then shrinks the file to it; a splice from a
	// large file (the NAR blob) can come back short in the middle.
	n, err := h.f.ReadAt(ctx, dest, off)
	if err != nil && err != io.EOF {
		return nil, toErrno(h.log, "read", h.node.display(), err)
	}
	size := h.f.Node().Size
	if want := min(int64(len(dest)), max(size-off, 0)); int64(n) < want {
		h.log.Error("read failed: the local cache file is shorter than the verified listing says", "path", h.node.display(), "offset", off, "got", n, "want", want)
		return nil, syscall.EIO
	}
	if off == 0 && int64(n) == size {
		h.node.cached.Store(true) // the kernel has it all: nothing to store
	}
	h.m.Served(int64(n))
	return fuse.ReadResultData(dest[:n]), 0
}

var _ = (fs.FileReleaser)((*fileHandle)(nil))

func (h *fileHandle) Release(ctx context.Context) (errno syscall.Errno) {
	defer observe(h.m, "release", time.Now(), &errno)
	h.f.Close()
	h.node.released()
	return 0
}

// passthroughHandle also offers the file's own copy to the kernel, which
// then serves reads itself (FUSE passthrough); go-fuse falls back to Read
// when the kernel or our privileges do not allow it.
type passthroughHandle struct {
	*fileHandle
}

var _ = (fs.FilePassthroughFder)((*passthroughHandle)(nil))

func (h *passthroughHandle) PassthroughFd() (int, bool) {
	return int(h.f.Passthrough().Fd()), true
}
