package localcache

// Lock order: Cache.mu is the package's one mutex and guards every entry's
// fields too. Under it, pinLocked (here) takes an entry's flock LOCK_SH,
// which blocks only while another process's evictor holds LOCK_EX, and
// renameAwayLocked (evict.go) only tries LOCK_EX|LOCK_NB: always Cache.mu
// then a flock, never the reverse. Nothing here calls out of the package.

import (
	"container/list"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/narfs/narfs/remote/internal/tune"
	"golang.org/x/sys/unix"
)

const layout = "v4"

var (
	// ErrMiss: the key is not (or no longer) in the local cache.
	ErrMiss = errors.New("not in the local cache")
	// ErrLocal wraps failures of the local disk (ENOSPC, EIO, EACCES...).
	ErrLocal = errors.New("local cache")
)

// Cache is one process's view of a cache directory. Safe for concurrent
// use.
type Cache struct {
	// read-only after Open
	base string // the cache dir, as given
	dir  string // <cache-dir>/v4, for messages and inspection only
	max  int64
	log  *slog.Logger
	// Descriptors of the cache dir and of v4's directories, checked at
	// Open and never closed (a pin may outlive Close): every access is
	// relative to them, so what the path leads to later does not matter.
	baseFd, narFd, tmpFd, recFd int

	mu      sync.Mutex // protects the fields below and every entry's fields
	entries map[string]*list.Element
	lru     *list.List // front = most recently used; values are *entry
	total   int64
	seq     int
	closed  bool
	nsFds   map[string]int // records/<ns> directories opened, checked

	held     map[*entry]time.Time // unpinned entries still holding their flock, since when
	sweeping *time.Timer          // runs sweep while held is not empty

	hits, misses, evictions atomic.Int64 // Acquires that found the entry or not; entries evicted
	drops                   atomic.Int64 // entries gone from the index or the disk, for any reason
}

type entry struct {
	key     string
	size    int64
	touched time.Time // last mtime update
	used    time.Time // last Acquire or Release
	pins    int
	dirFd   int // the entry's directory, while pinned (or held)
	lockFd  int // holds LOCK_SH while pinned (or held)
}

// closeDirs closes the directories of a cache that failed to open.
func (c *Cache) closeDirs() {
	for _, fd := range c.nsFds {
		unix.Close(fd)
	}
	unix.Close(c.narFd)
	unix.Close(c.tmpFd)
	unix.Close(c.recFd)
	unix.Close(c.baseFd)
}

func validName(s string) bool {
	if s == "" || len(s) > 128 || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c == '-' || c == '.' || c == '_') {
			return false
		}
	}
	return true
}

func (c *Cache) entryDir(key string) string { return filepath.Join(c.dir, "nar", key) }

// openEntry opens an entry's directory, checked.
func (c *Cache) openEntry(key string) (int, error) {
	return c.openDir(c.narFd, key, c.entryDir(key))
}

// Acquire pins the entry for key, or reports ErrMiss. Entries another
// process committed are found on disk.
func (c *Cache) Acquire(key string) (*Entry, error) {
	if !validName(key) {
		return nil, fmt.Errorf("cache key %q: %w", key, ErrMiss)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.entries[key]
	if !ok {
		size, mtime, err := c.readMeta(key)
		if errors.Is(err, ErrUnsafe) {
			c.misses.Add(1)
			return nil, err
		}
		if err != nil {
			c.misses.Add(1)
			return nil, fmt.Errorf("%s: %w", key, ErrMiss)
		}
		el = c.lru.PushFront(&entry{key: key, size: size, touched: mtime, dirFd: -1, lockFd: -1})
		c.entries[key] = el
		c.total += size
	}
	e := el.Value.(*entry)
	if err := c.pinLocked(e); err != nil {
		c.dropLocked(el)
		c.misses.Add(1)
		return nil, err
	}
	c.hits.Add(1)
	c.lru.MoveToFront(el)
	e.used = time.Now()
	if now := e.used; now.Sub(e.touched) > tune.TouchEvery {
		e.touched = now
		ts := []unix.Timespec{unix.NsecToTimespec(now.UnixNano()), unix.NsecToTimespec(now.UnixNano())}
		unix.UtimesNanoAt(c.narFd, key, ts, unix.AT_SYMLINK_NOFOLLOW)
	}
	return &Entry{c: c, e: e}, nil
}

// pinLocked adds a pin, taking the flock for the first one.
func (c *Cache) pinLocked(e *entry) error {
	if e.pins > 0 || e.lockFd >= 0 {
		// Pinned, or unpinned so recently that the flock is still held:
		// nobody can have evicted it.
		e.pins++
		delete(c.held, e)
		return nil
	}
	fd, err := c.openEntry(e.key)
	if errors.Is(err, ErrUnsafe) {
		return err
	}
	if err != nil {
		return fmt.Errorf("%s: %w (%v)", e.key, ErrMiss, err)
	}
	lfd, err := c.openFile(fd, "lock", filepath.Join(c.entryDir(e.key), "lock"), unix.O_RDONLY)
	if errors.Is(err, ErrUnsafe) {
		unix.Close(fd)
		return err
	}
	if err != nil {
		unix.Close(fd)
		return fmt.Errorf("%s: %w (%v)", e.key, ErrMiss, err)
	}
	// Blocks only while another process's evictor renames it away.
	if err := unix.Flock(lfd, unix.LOCK_SH); err != nil {
		unix.Close(lfd)
		unix.Close(fd)
		return fmt.Errorf("%s: %w: flock: %w", e.key, ErrLocal, err)
	}
	// The entry we locked must still be the one at the path: an evictor
	// may have renamed it between our open and our lock.
	if !c.lockAtPath(e.key, lfd) {
		unix.Close(lfd)
		unix.Close(fd)
		return fmt.Errorf("%s: %w (evicted meanwhile)", e.key, ErrMiss)
	}
	e.pins, e.dirFd, e.lockFd = 1, fd, lfd
	return nil
}

// lockAtPath reports whether lfd is the lock file of the entry now at
// nar/<key>.
func (c *Cache) lockAtPath(key string, lfd int) bool {
	dfd, err := unix.Openat(c.narFd, key, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(dfd)
	var a, b unix.Stat_t
	return unix.Fstat(lfd, &a) == nil && unix.Fstatat(dfd, "lock", &b, unix.AT_SYMLINK_NOFOLLOW) == nil && a.Ino == b.Ino && a.Dev == b.Dev
}

// unpinLocked drops a pin. The last one keeps the descriptors and the
// flock for holdIdle, so that the next opens in a busy entry (a tar of a
// store path) skip re-locking; the sweeper or an eviction closes them.
func (c *Cache) unpinLocked(e *entry) {
	if e.pins--; e.pins > 0 {
		return
	}
	if c.closed {
		c.closeFdsLocked(e)
		return
	}
	c.held[e] = time.Now()
	if c.sweeping == nil {
		c.sweeping = time.AfterFunc(tune.HoldIdle, c.sweep)
	}
}

// closeFdsLocked releases an unpinned entry's descriptors and flock.
func (c *Cache) closeFdsLocked(e *entry) {
	delete(c.held, e)
	if e.lockFd >= 0 {
		unix.Close(e.lockFd) // drops the flock
		unix.Close(e.dirFd)
		e.lockFd, e.dirFd = -1, -1
	}
}

// sweep closes the descriptors of entries idle for holdIdle.
func (c *Cache) sweep() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sweeping = nil
	now := time.Now()
	for e, since := range c.held {
		if now.Sub(since) >= tune.HoldIdle {
			c.closeFdsLocked(e)
		}
	}
	if len(c.held) > 0 {
		c.sweeping = time.AfterFunc(tune.HoldIdle, c.sweep)
	}
}

// Usage is the bytes of the entries this process knows.
func (c *Cache) Usage() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total
}

// Counts returns the Acquires that found their entry, those that did
// not, and the entries evicted to make room, since Open.
func (c *Cache) Counts() (hits, misses, evictions int64) {
	return c.hits.Load(), c.misses.Load(), c.evictions.Load()
}

// Drops changes whenever an entry this process knew leaves its index or
// is removed from the disk (evicted, forgotten, broken): a caller that
// keeps a descriptor of an entry's file without a pin (cheaper than an
// Acquire per use) re-checks with Acquire when it moved.
func (c *Cache) Drops() int64 { return c.drops.Load() }

// Close releases nothing but marks the cache closed; pins still held
// keep their locks until released.
func (c *Cache) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	for e := range c.held {
		c.closeFdsLocked(e)
	}
	return nil
}
