package localcache

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/narfs/narfs/remote/internal/tune"
	"golang.org/x/sys/unix"
)

// checkRecords checks, at Open, every namespace directory under records/.
func (c *Cache) checkRecords() error {
	ns, err := names(c.recFd)
	if err != nil {
		return fmt.Errorf("%s: %w: %w", filepath.Join(c.dir, "records"), ErrLocal, err)
	}
	for _, n := range ns {
		if !validName(n) {
			continue
		}
		if _, err := c.nsDir(n); err != nil {
			return err
		}
	}
	return nil
}

// nsDir returns records/<ns>, created if missing, checked once.
func (c *Cache) nsDir(ns string) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if fd, ok := c.nsFds[ns]; ok {
		return fd, nil
	}
	fd, err := c.mkdirOpen(c.recFd, ns, filepath.Join(c.dir, "records", ns))
	if err != nil {
		return -1, err
	}
	c.nsFds[ns] = fd
	return fd, nil
}

// PutRecord stores a small record atomically (a reader sees the old or
// the new one, never a mix).
func (c *Cache) PutRecord(ns, name string, data []byte) error {
	if !validName(ns) || !validName(name) || len(data) > tune.MaxRecord {
		return fmt.Errorf("record %s/%s: invalid", ns, name)
	}
	dir, err := c.nsDir(ns)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.seq++
	tmp := fmt.Sprintf("%d.%d.record", os.Getpid(), c.seq)
	c.mu.Unlock()
	if err := writeAt(c.tmpFd, tmp, data); err != nil {
		return fmt.Errorf("%w: %w", ErrLocal, err)
	}
	if err := unix.Renameat(c.tmpFd, tmp, dir, name); err != nil {
		unix.Unlinkat(c.tmpFd, tmp, 0)
		return fmt.Errorf("%w: %w", ErrLocal, err)
	}
	return nil
}

// GetRecord reads a record and when it was written; ErrMiss if absent.
func (c *Cache) GetRecord(ns, name string) ([]byte, time.Time, error) {
	if !validName(ns) || !validName(name) {
		return nil, time.Time{}, fmt.Errorf("record %s/%s: %w", ns, name, ErrMiss)
	}
	dir, err := c.nsDir(ns)
	if err != nil {
		return nil, time.Time{}, err
	}
	fd, err := c.openFile(dir, name, filepath.Join(c.dir, "records", ns, name), unix.O_RDONLY)
	if err == unix.ENOENT {
		return nil, time.Time{}, fmt.Errorf("record %s/%s: %w", ns, name, ErrMiss)
	}
	if err != nil {
		if errors.Is(err, ErrLocal) {
			return nil, time.Time{}, fmt.Errorf("record %s/%s: %w", ns, name, err)
		}
		return nil, time.Time{}, fmt.Errorf("record %s/%s: %w: %w", ns, name, ErrLocal, err)
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("record %s/%s: %w: %w", ns, name, ErrLocal, err)
	}
	data, err := readRegular(f, name, tune.MaxRecord)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("record %s/%s: %w: %w", ns, name, ErrLocal, err)
	}
	return data, fi.ModTime(), nil
}
