package upload

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"

	"github.com/narfs/narfs/remote/backend"
)

// TODO(put): remove once backend's file store implements Writer.

var tmpSeq atomic.Uint64

// fallbackWriter writes file:// stores while the backend cannot.
func fallbackWriter(u *backend.StoreURL) (backend.Writer, bool) {
	if u.Scheme != "file" {
		return nil, false
	}
	return dirWriter(u.Path), true
}

type dirWriter string

func (d dirWriter) path(key string) (string, error) {
	if !filepath.IsLocal(key) {
		return "", fmt.Errorf("%w %q", backend.ErrInvalidKey, key)
	}
	return filepath.Join(string(d), key), nil
}

func (d dirWriter) Put(ctx context.Context, key string, r io.Reader, size int64, _ string) error {
	p, err := d.path(key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	tmp := p + ".tmp." + strconv.Itoa(os.Getpid()) + "." + strconv.FormatUint(tmpSeq.Add(1), 10)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	n, err := io.Copy(f, io.LimitReader(r, size+1))
	if err == nil && n != size {
		err = fmt.Errorf("put %s: %d bytes, want %d", key, n, size)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

func (d dirWriter) Delete(_ context.Context, key string) error {
	p, err := d.path(key)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}
