package localcache

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// maxRecord bounds a record; narinfos are well under a kilobyte.
const maxRecord = 64 << 20 // chunk indexes of large paths are records too

// PutRecord stores a small record atomically (a reader sees the old or
// the new one, never a mix).
func (c *Cache) PutRecord(ns, name string, data []byte) error {
	if !validName(ns) || !validName(name) || len(data) > maxRecord {
		return fmt.Errorf("record %s/%s: invalid", ns, name)
	}
	dir := filepath.Join(c.dir, "records", ns)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("%w: %w", ErrLocal, err)
	}
	c.mu.Lock()
	c.seq++
	tmp := filepath.Join(c.dir, "tmp", fmt.Sprintf("%d.%d.record", os.Getpid(), c.seq))
	c.mu.Unlock()
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("%w: %w", ErrLocal, err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("%w: %w", ErrLocal, err)
	}
	return nil
}

// GetRecord reads a record and when it was written; ErrMiss if absent.
func (c *Cache) GetRecord(ns, name string) ([]byte, time.Time, error) {
	if !validName(ns) || !validName(name) {
		return nil, time.Time{}, fmt.Errorf("record %s/%s: %w", ns, name, ErrMiss)
	}
	f, err := os.OpenFile(filepath.Join(c.dir, "records", ns, name), os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil, time.Time{}, fmt.Errorf("record %s/%s: %w", ns, name, ErrMiss)
	}
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("record %s/%s: %w: %w", ns, name, ErrLocal, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("record %s/%s: %w: %w", ns, name, ErrLocal, err)
	}
	data, err := readRegular(f, name, maxRecord)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("record %s/%s: %w: %w", ns, name, ErrLocal, err)
	}
	return data, fi.ModTime(), nil
}
