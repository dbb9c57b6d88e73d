package backend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
)

// tmpSeq numbers the temporary files of this process.
var tmpSeq atomic.Uint64

// checkPutKey is checkKey plus what only a write needs: the key must name
// a file, not end in a directory separator, and must not be a URL (which
// a read merely fails to find, but a write would create as a "https:"
// directory).
func checkPutKey(key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if strings.HasSuffix(key, "/") {
		return fmt.Errorf("%w %q: must name a file", ErrInvalidKey, key)
	}
	if strings.Contains(key, "://") {
		return fmt.Errorf("%w %q: want a key relative to the store, not a URL", ErrInvalidKey, key)
	}
	return nil
}

// Put writes "<key>.tmp.<pid>.<n>" (as Nix does; List skips such names),
// fsyncs it and renames it over key, then fsyncs the directory. Parent
// directories are created as needed. On any failure the temporary file
// is removed and an existing object at key is left as it was.
func (b *fileBackend) Put(ctx context.Context, key string, r io.Reader, size int64, contentType string) error {
	if err := checkPutKey(key); err != nil {
		return fmt.Errorf("%s: put %s: %w", b, key, err)
	}
	if err := checkSize(size); err != nil {
		return fmt.Errorf("%s: put %s: %w", b, key, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: put %s: %w", b, key, err)
	}
	dir := path.Dir(key)
	if dir != "." {
		if err := b.root.MkdirAll(dir, 0o755); err != nil {
			return b.mapErr("put", key, err)
		}
	}
	f, tmp, err := b.createTemp(key)
	if err != nil {
		return b.mapErr("put", key, err)
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			b.root.Remove(tmp)
		}
	}()
	sr := newSizedReader(ctx, r, size)
	// io.Copy would use f.ReadFrom, which may bypass sizedReader's
	// end check via copy_file_range/splice on some sources; a plain
	// buffer loop keeps the check authoritative.
	if _, err := io.CopyBuffer(writerOnly{f}, sr, make([]byte, 256<<10)); err != nil {
		return fmt.Errorf("%s: put %s: %w", b, key, err)
	}
	if !sr.complete() {
		return fmt.Errorf("%s: put %s: %w: the reader was not fully consumed", b, key, ErrSizeMismatch)
	}
	if err := f.Sync(); err != nil {
		return b.mapErr("put", key, err)
	}
	if err := f.Close(); err != nil {
		return b.mapErr("put", key, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: put %s: %w", b, key, err)
	}
	if err := b.root.Rename(tmp, key); err != nil {
		return b.mapErr("put", key, err)
	}
	ok = true
	// The rename is durable once the directory is synced; a failure
	// here does not undo the Put, which other readers already see.
	if d, err := b.root.Open(dir); err == nil {
		serr := d.Sync()
		d.Close()
		if serr != nil {
			return b.mapErr("put", key, fmt.Errorf("syncing the directory: %w", serr))
		}
	}
	return nil
}

// createTemp creates key's temporary file exclusively; a name left by an
// earlier process with the same pid is skipped.
func (b *fileBackend) createTemp(key string) (*os.File, string, error) {
	for {
		tmp := key + ".tmp." + strconv.Itoa(os.Getpid()) + "." + strconv.FormatUint(tmpSeq.Add(1), 10)
		f, err := b.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_CLOEXEC, 0o644)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		return f, tmp, err
	}
}

// writerOnly hides a file's ReadFrom.
type writerOnly struct{ w io.Writer }

func (w writerOnly) Write(p []byte) (int, error) { return w.w.Write(p) }

// Delete removes key; a missing key is not an error, a directory is.
func (b *fileBackend) Delete(ctx context.Context, key string) error {
	if err := checkPutKey(key); err != nil {
		return fmt.Errorf("%s: delete %s: %w", b, key, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: delete %s: %w", b, key, err)
	}
	st, err := b.root.Lstat(key)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return b.mapErr("delete", key, err)
	}
	if st.IsDir() {
		return fmt.Errorf("%s: delete %s: is a directory", b, key)
	}
	if err := b.root.Remove(key); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return b.mapErr("delete", key, err)
	}
	return nil
}
