package localcache

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/narfs/narfs/remote/internal/tune"
	"golang.org/x/sys/unix"
)

// Entry is a pinned cache entry: while any pin is held it is not evicted
// by this or any other process. Release every pin.
type Entry struct {
	c *Cache
	e *entry
}

// Key is the entry's key.
func (h *Entry) Key() string { return h.e.key }

// Root is the path of the entry's store path, for inspection only:
// readers use OpenFile, which cannot be led astray by symlinks.
func (h *Entry) Root() string { return filepath.Join(h.c.entryDir(h.e.key), "root") }

// Retain adds a pin, for handing the entry to one more owner.
func (h *Entry) Retain() {
	h.c.mu.Lock()
	defer h.c.mu.Unlock()
	h.e.pins++
}

// Release removes a pin; the last one drops the flock, and entries past
// the cap may then be evicted.
func (h *Entry) Release() {
	c := h.c
	c.mu.Lock()
	c.unpinLocked(h.e)
	h.e.used = time.Now()
	// Just used: the most recent entry.
	if el, ok := c.entries[h.e.key]; ok {
		c.lru.MoveToFront(el)
	}
	var gone []string
	if h.e.pins == 0 {
		gone = c.evictLocked(h.e.key)
		if h.e.size > c.max {
			key := h.e.key
			time.AfterFunc(tune.OversizeLinger, func() { c.evictIdle(key) })
		}
	}
	c.mu.Unlock()
	c.removeGone(gone)
}

// evictIdle removes an entry larger than the cap that nobody used for
// oversizeLinger.
func (c *Cache) evictIdle(key string) {
	c.mu.Lock()
	el, ok := c.entries[key]
	if !ok {
		c.mu.Unlock()
		return
	}
	e := el.Value.(*entry)
	var gone string
	if e.pins == 0 && e.size > c.max && time.Since(e.used) >= tune.OversizeLinger {
		c.closeFdsLocked(e)
		if d, ok := c.renameAwayLocked(key); ok {
			c.dropLocked(el)
			gone = d
		}
	}
	c.mu.Unlock()
	if gone != "" {
		c.removeGone([]string{gone})
	}
}

// openHow resolves inside the entry only: no symlink (of the NAR's tree
// or otherwise), no "..", no other mount.
var openHow = unix.OpenHow{
	Flags:   unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_CLOEXEC | unix.O_NONBLOCK,
	Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
}

// OpenFile opens the regular file at sub ("" for a store path that is a
// single file) inside the entry's root, never following a symlink. A file
// missing from the entry is ErrMiss (deleted from under us); anything but
// a regular file is an error.
func (h *Entry) OpenFile(sub string) (*os.File, error) {
	rel := "root"
	if sub != "" {
		for _, seg := range strings.Split(sub, "/") {
			if seg == "" || seg == "." || seg == ".." || strings.ContainsRune(seg, 0) {
				return nil, fmt.Errorf("open %q in the local cache: bad path", sub)
			}
		}
		rel += "/" + sub
	}
	fd, err := openBeneath(h.e.dirFd, rel)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, fmt.Errorf("open %s in the local cache: %w (%v)", rel, ErrMiss, err)
		}
		return nil, fmt.Errorf("open %s in the local cache: %w: %w", rel, ErrLocal, err)
	}
	if err := h.c.checkFd(fd, filepath.Join(h.c.entryDir(h.e.key), rel), false); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("open %s in the local cache: %w", rel, err)
	}
	// Reads must block like any file's; a blocking descriptor also spares
	// os.NewFile an attempt to register it with the poller.
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("open %s in the local cache: %w: %w", rel, ErrLocal, err)
	}
	return os.NewFile(uintptr(fd), filepath.Join(h.c.entryDir(h.e.key), rel)), nil
}

// openBeneath is openat2 with openHow, or a walk of O_NOFOLLOW opens
// where the kernel lacks openat2.
func openBeneath(dirFd int, rel string) (int, error) {
	fd, err := unix.Openat2(dirFd, rel, &openHow)
	if err != unix.ENOSYS {
		return fd, err
	}
	parts := strings.Split(rel, "/")
	cur := dirFd
	for i, p := range parts {
		flags := unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_CLOEXEC
		if i < len(parts)-1 {
			flags |= unix.O_DIRECTORY
		} else {
			flags |= unix.O_NONBLOCK
		}
		next, err := unix.Openat(cur, p, flags, 0)
		if cur != dirFd {
			unix.Close(cur)
		}
		if err != nil {
			if err == unix.ENOTDIR {
				err = unix.ELOOP // a symlink where a directory was wanted
			}
			return -1, err
		}
		cur = next
	}
	return cur, nil
}

// ReadMeta reads a small file written beside the root at commit.
func (h *Entry) ReadMeta(name string) ([]byte, error) {
	if !validName(name) {
		return nil, fmt.Errorf("meta name %q: invalid", name)
	}
	fd, err := h.c.openFile(h.e.dirFd, name, filepath.Join(h.c.entryDir(h.e.key), name), unix.O_RDONLY)
	if err != nil {
		if err == unix.ENOENT {
			return nil, fmt.Errorf("%s of %s: %w", name, h.e.key, ErrMiss)
		}
		if errors.Is(err, ErrLocal) {
			return nil, fmt.Errorf("%s of %s: %w", name, h.e.key, err)
		}
		return nil, fmt.Errorf("%s of %s: %w: %w", name, h.e.key, ErrLocal, err)
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	data, err := readRegular(f, name, 1<<30)
	if err != nil {
		return nil, fmt.Errorf("%s of %s: %w: %w", name, h.e.key, ErrLocal, err)
	}
	return data, nil
}

// OpenData opens a data file of the entry (made with CreateFile) for
// reading and writing. Like every open of cache content it never follows
// a symlink, and the file must be regular.
func (h *Entry) OpenData(name string) (*os.File, error) {
	return h.openData(name, unix.O_RDWR)
}

// OpenRead opens a data file of the entry for reading, with OpenData's
// checks.
func (h *Entry) OpenRead(name string) (*os.File, error) {
	return h.openData(name, unix.O_RDONLY)
}

func (h *Entry) openData(name string, mode int) (*os.File, error) {
	if !validName(name) || name == "meta" || name == "lock" || name == "root" {
		return nil, fmt.Errorf("data file name %q: invalid", name)
	}
	fd, err := h.c.openFile(h.e.dirFd, name, filepath.Join(h.c.entryDir(h.e.key), name), mode)
	if err != nil {
		if err == unix.ENOENT {
			return nil, fmt.Errorf("%s of %s: %w", name, h.e.key, ErrMiss)
		}
		if errors.Is(err, ErrLocal) {
			return nil, fmt.Errorf("%s of %s: %w", name, h.e.key, err)
		}
		return nil, fmt.Errorf("%s of %s: %w: %w", name, h.e.key, ErrLocal, err)
	}
	return os.NewFile(uintptr(fd), filepath.Join(h.c.entryDir(h.e.key), name)), nil
}

// PublishData adds a data file to a committed entry: write fills a
// temporary file, which is synced and renamed to name only if write
// succeeded, so the file appears whole or not at all. If the file exists
// already (another process was first), that one is kept.
func (h *Entry) PublishData(name string, write func(f *os.File) error) error {
	if !validName(name) || name == "meta" || name == "lock" || name == "root" {
		return fmt.Errorf("data file name %q: invalid", name)
	}
	h.c.mu.Lock()
	h.c.seq++
	tmp := fmt.Sprintf("%s.tmp.%d.%d", name, os.Getpid(), h.c.seq)
	h.c.mu.Unlock()
	fd, err := unix.Openat(h.e.dirFd, tmp, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, fileMode)
	if err != nil {
		return fmt.Errorf("%s of %s: %w: %w", name, h.e.key, ErrLocal, err)
	}
	f := os.NewFile(uintptr(fd), tmp)
	err = write(f)
	var size int64
	if err == nil {
		if serr := f.Sync(); serr != nil {
			err = fmt.Errorf("%w: %w", ErrLocal, serr)
		}
		if fi, serr := f.Stat(); serr == nil {
			size = fi.Size()
		}
	}
	f.Close()
	if err == nil {
		err = unix.Renameat2(h.e.dirFd, tmp, h.e.dirFd, name, unix.RENAME_NOREPLACE)
		if err == unix.EEXIST {
			err = nil
			unix.Unlinkat(h.e.dirFd, tmp, 0)
		} else if err != nil {
			err = fmt.Errorf("%s of %s: %w: %w", name, h.e.key, ErrLocal, err)
		} else {
			h.grow(size)
		}
	}
	if err != nil {
		unix.Unlinkat(h.e.dirFd, tmp, 0)
	}
	return err
}

// RemoveData deletes a data file of the entry (and never what a symlink
// there points to): it was found not to match what was verified, and the
// next PublishData must not keep it.
func (h *Entry) RemoveData(name string) error {
	if !validName(name) || name == "meta" || name == "lock" || name == "root" {
		return fmt.Errorf("data file name %q: invalid", name)
	}
	if err := unix.Unlinkat(h.e.dirFd, name, 0); err != nil && err != unix.ENOENT {
		return fmt.Errorf("%s of %s: %w: %w", name, h.e.key, ErrLocal, err)
	}
	return nil
}

// grow accounts n more bytes to the entry (a file published beside its
// NAR duplicates bytes the blob keeps too), in memory and in its meta, so
// that the size cap covers them, and evicts others past the cap.
func (h *Entry) grow(n int64) {
	c := h.c
	c.mu.Lock()
	if n <= 0 || h.e.size > math.MaxInt64-n {
		c.mu.Unlock()
		return
	}
	h.e.size += n
	c.total += n
	size := h.e.size
	gone := c.evictLocked(h.e.key)
	c.seq++
	tmp := fmt.Sprintf("meta.tmp.%d.%d", os.Getpid(), c.seq)
	c.mu.Unlock()
	c.removeGone(gone)
	// Best effort: another process's grow may race this one (one of the
	// two is lost until the entry is next read); the cap is approximate
	// across processes anyway.
	if err := writeAt(h.e.dirFd, tmp, []byte(strconv.FormatInt(size, 10)+"\n")); err == nil {
		if unix.Renameat(h.e.dirFd, tmp, h.e.dirFd, "meta") != nil {
			unix.Unlinkat(h.e.dirFd, tmp, 0)
		}
	}
}

// writeAt creates name beneath dirFd with data.
func writeAt(dirFd int, name string, data []byte) error {
	fd, err := unix.Openat(dirFd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, fileMode)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), name)
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		unix.Unlinkat(dirFd, name, 0)
	}
	return err
}
