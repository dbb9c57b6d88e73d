package localcache

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// Pending is an entry being written: a private temp directory that
// becomes the entry at Commit.
type Pending struct {
	c    *Cache
	dir  string
	done bool
}

// Begin makes a private directory to write an entry into.
func (c *Cache) Begin() (*Pending, error) {
	c.mu.Lock()
	c.seq++
	seq := c.seq
	c.mu.Unlock()
	d := filepath.Join(c.dir, "tmp", fmt.Sprintf("%d.%d", os.Getpid(), seq))
	if err := os.RemoveAll(d); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrLocal, err)
	}
	if err := os.Mkdir(d, 0o755); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrLocal, err)
	}
	return &Pending{c: c, dir: d}, nil
}

// Root is where the caller writes the store path (it does not exist yet).
func (p *Pending) Root() string { return filepath.Join(p.dir, "root") }

// WriteMeta writes a small file beside the root.
func (p *Pending) WriteMeta(name string, data []byte) error {
	if !validName(name) || name == "meta" || name == "lock" || name == "root" {
		return fmt.Errorf("meta name %q: invalid", name)
	}
	if err := os.WriteFile(filepath.Join(p.dir, name), data, 0o644); err != nil {
		return fmt.Errorf("%w: %w", ErrLocal, err)
	}
	return nil
}

// Abort removes what was written; a no-op after Commit.
func (p *Pending) Abort() {
	if !p.done {
		p.done = true
		os.RemoveAll(p.dir)
	}
}

// Commit publishes the entry under key (if another process published the
// key first, its copy, verified against the same key, is used), evicts
// others past the cap, and returns the entry pinned.
func (p *Pending) Commit(key string, size int64) (*Entry, error) {
	c := p.c
	if !validName(key) {
		p.Abort()
		return nil, fmt.Errorf("cache key %q: invalid", key)
	}
	if size < 0 {
		size = 0
	}
	for _, f := range []struct{ name, data string }{{"meta", strconv.FormatInt(size, 10) + "\n"}, {"lock", ""}} {
		if err := os.WriteFile(filepath.Join(p.dir, f.name), []byte(f.data), 0o644); err != nil {
			p.Abort()
			return nil, fmt.Errorf("%w: %w", ErrLocal, err)
		}
	}
	c.mu.Lock()
	for attempt := 0; ; attempt++ {
		err := os.Rename(p.dir, c.entryDir(key))
		if err == nil {
			p.done = true
			break
		}
		if _, _, merr := readMeta(c.entryDir(key)); merr == nil {
			break // published by another process (or an earlier run) meanwhile: use it
		}
		// Not a complete entry there: another process may be renaming its
		// copy away right now; try again, then give up.
		if attempt >= 3 || !(errors.Is(err, syscall.EEXIST) || errors.Is(err, syscall.ENOTEMPTY)) {
			c.mu.Unlock()
			p.Abort()
			return nil, fmt.Errorf("%w: %w", ErrLocal, err)
		}
	}
	el, ok := c.entries[key]
	if !ok {
		el = c.lru.PushFront(&entry{key: key, size: size, dirFd: -1, lockFd: -1})
		c.entries[key] = el
		c.total += size
	}
	e := el.Value.(*entry)
	if perr := c.pinLocked(e); perr != nil {
		c.dropLocked(el)
		c.mu.Unlock()
		p.Abort()
		if errors.Is(perr, ErrMiss) {
			// Evicted by another process in the instant since it was
			// published: the caller fetches again.
			return nil, fmt.Errorf("entry %s vanished right after commit: %w", key, perr)
		}
		return nil, perr
	}
	c.lru.MoveToFront(el)
	e.used = e.touched
	gone := c.evictLocked(key)
	c.mu.Unlock()
	p.Abort()
	removeAll(gone)
	return &Entry{c: c, e: e}, nil
}

// CreateFile creates a data file of the entry being written, open for
// reading and writing: a NAR blob that is filled in after the commit,
// chunk by chunk, through Entry.OpenData. Whoever fills it must make sure
// no unverified byte of it is ever served.
func (p *Pending) CreateFile(name string) (*os.File, error) {
	if !validName(name) || name == "meta" || name == "lock" || name == "root" {
		return nil, fmt.Errorf("data file name %q: invalid", name)
	}
	f, err := os.OpenFile(filepath.Join(p.dir, name), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrLocal, err)
	}
	return f, nil
}
