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

// open opens key as a regular file.
func (b *fileBackend) open(op, key string) (*os.File, int64, error) {
	if err := checkKey(key); err != nil {
		return nil, 0, fmt.Errorf("%s: %s %s: %w", b, op, key, err)
	}
	// O_NONBLOCK: opening a FIFO (or a device) would otherwise wait for a
	// writer forever; such keys are refused below.
	f, err := b.root.OpenFile(key, os.O_RDONLY|syscall.O_NONBLOCK, 0)
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
		return nil, 0, fmt.Errorf("%s: %s %s: %w (not a regular file: %v)", b, op, key, ErrNotFound, st.Mode().Type())
	}
	// Regular files never block; Fd puts the descriptor back in blocking
	// mode for the readers all the same.
	f.Fd()
	return f, st.Size(), nil
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
	for {
		ents, err := d.ReadDir(1024)
		for _, e := range ents {
			name := e.Name()
			// Nix writes <name>.tmp.<pid>.<n> and renames it into place.
			if !strings.HasSuffix(name, suffix) || strings.Contains(name, ".tmp.") || e.IsDir() {
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
