package backend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// fileBackend serves file:///DIR. Keys are opened through an os.Root, so
// neither ".." nor a symlink can reach outside DIR (symlinks inside DIR
// that stay inside it work).
type fileBackend struct {
	name string   // read-only after open
	root *os.Root // read-only after open; safe for concurrent use
}

func openFile(u *StoreURL, _ Options) (*fileBackend, error) {
	name := u.base()
	st, err := os.Stat(u.Path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("%s: not a directory", name)
	}
	root, err := os.OpenRoot(u.Path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &fileBackend{name: name, root: root}, nil
}

func (b *fileBackend) String() string { return b.name }

func (b *fileBackend) Close() error { return b.root.Close() }

// checkKey rejects keys that are not plain relative paths. os.Root would
// refuse most of them too; this gives a clearer error first.
func checkKey(key string) error {
	if key == "" || strings.Contains(key, "\\") || strings.ContainsRune(key, 0) || !filepath.IsLocal(key) {
		return fmt.Errorf("%w %q: must be a relative path inside the store", ErrInvalidKey, key)
	}
	for _, seg := range strings.Split(key, "/") {
		if seg == ".." {
			return fmt.Errorf("%w %q: must not contain a \"..\" segment", ErrInvalidKey, key)
		}
	}
	return nil
}

func (b *fileBackend) mapErr(op, key string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		err = fmt.Errorf("%w: %w", ErrNotFound, err)
	case strings.Contains(err.Error(), "escapes from parent"):
		// os.Root's escape error is unexported; it means a symlink
		// pointing outside the store directory.
		err = fmt.Errorf("%w: %w", ErrInvalidKey, err)
	}
	return fmt.Errorf("%s: %s %s: %w", b, op, key, err)
}

// open opens key as a regular file. O_NONBLOCK keeps the open itself from
// blocking on a FIFO without a writer (or a device); anything that is not a
// regular file is then rejected before it is read. A socket cannot be
// opened at all (ENXIO).
func (b *fileBackend) open(op, key string) (*os.File, int64, error) {
	if err := checkKey(key); err != nil {
		return nil, 0, fmt.Errorf("%s: %s %s: %w", b, op, key, err)
	}
	notRegular := fmt.Errorf("%s: %s %s: %w (not a regular file)", b, op, key, ErrNotFound)
	f, err := b.root.OpenFile(key, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if errors.Is(err, syscall.ENXIO) {
		return nil, 0, notRegular
	}
	if err != nil {
		return nil, 0, b.mapErr(op, key, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, b.mapErr(op, key, err)
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, 0, notRegular
	}
	// O_NONBLOCK was only for the open; reads must block normally.
	if err := setBlocking(f); err != nil {
		f.Close()
		return nil, 0, b.mapErr(op, key, err)
	}
	return f, st.Size(), nil
}

// setBlocking clears O_NONBLOCK on f's descriptor.
func setBlocking(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = syscall.SetNonblock(int(fd), false) }); err != nil {
		return err
	}
	return serr
}

func (b *fileBackend) Get(ctx context.Context, key string) (*Object, error) {
	f, size, err := b.open("get", key)
	if err != nil {
		return nil, err
	}
	return &Object{Body: f, Size: size}, nil
}

func (b *fileBackend) GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if err := checkRange(off, n); err != nil {
		return nil, fmt.Errorf("%s: get %s: %w", b, key, err)
	}
	f, size, err := b.open("get", key)
	if err != nil {
		return nil, err
	}
	if off+n > size {
		f.Close()
		return nil, fmt.Errorf("%s: get %s: %w: bytes %d-%d of %d", b, key, ErrRange, off, off+n, size)
	}
	// exactReader turns a file truncated under us into an error.
	return &exactReader{r: io.NewSectionReader(f, off, n), c: f, left: n}, nil
}

func (b *fileBackend) Stat(ctx context.Context, key string) (Info, error) {
	f, size, err := b.open("stat", key)
	if err != nil {
		return Info{}, err
	}
	f.Close()
	return Info{Size: size}, nil
}

func (b *fileBackend) List(ctx context.Context, suffix string, fn func(string) error) error {
	d, err := b.root.Open(".")
	if err != nil {
		return fmt.Errorf("%s: list: %w", b, err)
	}
	defer d.Close()
	// A directory cannot cycle, but one on a file system that never ends
	// its listing (a FUSE mount, say) must not keep a caller without a
	// deadline for ever.
	entries := 0
	for {
		ents, err := d.ReadDir(1024)
		if entries += len(ents); entries > maxListKeys {
			return fmt.Errorf("%s: list: %w: more than %d entries", b, ErrListing, maxListKeys)
		}
		for _, e := range ents {
			name := e.Name()
			// Nix writes <name>.tmp.<pid>.<n> and renames it into place.
			if !strings.HasSuffix(name, suffix) || strings.Contains(name, ".tmp.") || !isRegular(e) {
				continue
			}
			if err := fn(name); err != nil {
				return err
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: list: %w", b, err)
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("%s: list: %w", b, err)
		}
	}
}

// isRegular reports whether a directory entry may be a key: a regular file,
// or a symlink (listed as before; open decides, and cannot block). A FIFO,
// device or socket would only fail when looked up.
func isRegular(e fs.DirEntry) bool {
	t := e.Type()
	return t.IsRegular() || t&fs.ModeSymlink != 0
}

// checkRange rejects negative values and an end (off+n) beyond int64; the
// sum is what every backend computes next.
func checkRange(off, n int64) error {
	if off < 0 || n < 0 || off+n < off {
		return fmt.Errorf("%w: offset %d length %d", ErrRange, off, n)
	}
	return nil
}

// exactReader yields exactly left bytes from r or fails: an early EOF is
// io.ErrUnexpectedEOF, never a short success.
type exactReader struct {
	r     io.Reader
	c     io.Closer
	left  int64
	short error // returned on early EOF instead of io.ErrUnexpectedEOF
}

func (e *exactReader) Read(p []byte) (int, error) {
	if e.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > e.left {
		p = p[:e.left]
	}
	n, err := e.r.Read(p)
	if n < 0 || n > len(p) {
		return 0, fmt.Errorf("Read returned %d for a %d-byte buffer", n, len(p))
	}
	e.left -= int64(n)
	if err == io.EOF {
		if e.left > 0 {
			if e.short != nil {
				return n, e.short
			}
			return n, io.ErrUnexpectedEOF
		}
	}
	if e.left == 0 && err == nil {
		err = io.EOF
	}
	return n, err
}

func (e *exactReader) Close() error { return e.c.Close() }
