package localcache

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// Pending is an entry being written: a private temp directory that
// becomes the entry at Commit.
type Pending struct {
	c    *Cache
	name string // beneath tmp/
	fd   int    // the directory, open until Commit or Abort
	done bool
}

// Begin makes a private directory to write an entry into.
func (c *Cache) Begin() (*Pending, error) {
	c.mu.Lock()
	c.seq++
	seq := c.seq
	c.mu.Unlock()
	name := fmt.Sprintf("%d.%d", os.Getpid(), seq)
	if err := removeAllAt(c.tmpFd, name); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrLocal, err)
	}
	if err := unix.Mkdirat(c.tmpFd, name, dirMode); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrLocal, err)
	}
	fd, err := c.openDir(c.tmpFd, name, filepath.Join(c.dir, "tmp", name))
	if err != nil {
		removeAllAt(c.tmpFd, name)
		if !errors.Is(err, ErrLocal) {
			err = fmt.Errorf("%w: %w", ErrLocal, err)
		}
		return nil, err
	}
	return &Pending{c: c, name: name, fd: fd}, nil
}

// Root is where the caller writes the store path (it does not exist
// yet), for callers that keep a tree: it is reached by path.
func (p *Pending) Root() string { return filepath.Join(p.c.dir, "tmp", p.name, "root") }

// WriteMeta writes a small file beside the root.
func (p *Pending) WriteMeta(name string, data []byte) error {
	if !validName(name) || name == "meta" || name == "lock" || name == "root" {
		return fmt.Errorf("meta name %q: invalid", name)
	}
	if err := writeAt(p.fd, name, data); err != nil {
		return fmt.Errorf("%w: %w", ErrLocal, err)
	}
	return nil
}

// Abort removes what was written; a no-op after Commit.
func (p *Pending) Abort() {
	if !p.done {
		p.done = true
		unix.Close(p.fd)
		removeAllAt(p.c.tmpFd, p.name)
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
		if err := writeAt(p.fd, f.name, []byte(f.data)); err != nil {
			p.Abort()
			return nil, fmt.Errorf("%w: %w", ErrLocal, err)
		}
	}
	c.mu.Lock()
	for attempt := 0; ; attempt++ {
		err := unix.Renameat(c.tmpFd, p.name, c.narFd, key)
		if err == nil {
			p.done = true
			unix.Close(p.fd)
			break
		}
		_, _, merr := c.readMeta(key)
		if merr == nil {
			break // published by another process (or an earlier run) meanwhile: use it
		}
		if errors.Is(merr, ErrUnsafe) {
			c.mu.Unlock()
			p.Abort()
			return nil, merr
		}
		// Not a complete entry there: another process may be renaming its
		// copy away right now; try again, then give up.
		if attempt >= 3 || !(err == unix.EEXIST || err == unix.ENOTEMPTY) {
			c.mu.Unlock()
			p.Abort()
			return nil, fmt.Errorf("%w: rename to %s: %w", ErrLocal, c.entryDir(key), err)
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
	c.removeGone(gone)
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
	fd, err := unix.Openat(p.fd, name, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, fileMode)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrLocal, err)
	}
	return os.NewFile(uintptr(fd), filepath.Join(p.c.dir, "tmp", p.name, name)), nil
}
