package localcache

import (
	"container/list"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
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

// Open opens (creating it if needed) the cache under base. It refuses
// (ErrUnsafe) a cache dir, or a directory or entry in it, that is not
// owned by the running user or is writable by group or others, and a
// symlink anywhere in it. base itself may be reached through symlinks.
func Open(base string, max int64, log *slog.Logger) (*Cache, error) {
	c := &Cache{base: base, dir: filepath.Join(base, layout), max: max, log: log, entries: map[string]*list.Element{}, lru: list.New(), held: map[*entry]time.Time{}, nsFds: map[string]int{}}
	if err := os.MkdirAll(base, dirMode); err != nil {
		return nil, fmt.Errorf("cache dir: %w: %w", ErrLocal, err)
	}
	bfd, err := unix.Open(base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("cache dir %s: %w: %w", base, ErrLocal, err)
	}
	if err := c.checkFd(bfd, base, true); err != nil {
		unix.Close(bfd)
		return nil, err
	}
	c.baseFd = bfd
	vfd, err := c.mkdirOpen(bfd, layout, c.dir)
	if err != nil {
		unix.Close(bfd)
		return nil, err
	}
	fds := []*int{&c.narFd, &c.tmpFd, &c.recFd}
	for i, d := range []string{"nar", "tmp", "records"} {
		if *fds[i], err = c.mkdirOpen(vfd, d, filepath.Join(c.dir, d)); err != nil {
			for _, fd := range append(fds[:i], &vfd, &bfd) {
				unix.Close(*fd)
			}
			return nil, err
		}
	}
	unix.Close(vfd)
	if err := c.checkRecords(); err != nil {
		c.closeDirs()
		return nil, err
	}
	if err := c.removeStale(); err != nil {
		c.closeDirs()
		return nil, fmt.Errorf("cache dir: %w: %w", ErrLocal, err)
	}
	if err := c.load(); err != nil {
		c.closeDirs()
		if errors.Is(err, ErrUnsafe) {
			return nil, err
		}
		return nil, fmt.Errorf("cache dir: %w: %w", ErrLocal, err)
	}
	// Last: it leaves deletions running on baseFd.
	c.dropOldLayouts()
	return c, nil
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

// load indexes existing entries, most recently used first.
func (c *Cache) load() error {
	ents, err := names(c.narFd)
	if err != nil {
		return err
	}
	type found struct {
		key   string
		size  int64
		mtime time.Time
	}
	var all []found
	for _, name := range ents {
		if !validName(name) {
			continue
		}
		size, mtime, err := c.readMeta(name)
		if errors.Is(err, ErrUnsafe) {
			// Put there by someone else: refuse the whole cache dir,
			// whose owner must look.
			return err
		}
		if err != nil {
			c.removeBroken(name, err)
			continue
		}
		all = append(all, found{name, size, mtime})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].mtime.After(all[j].mtime) })
	for _, f := range all {
		c.entries[f.key] = c.lru.PushBack(&entry{key: f.key, size: f.size, touched: f.mtime, dirFd: -1, lockFd: -1})
		c.total += f.size
	}
	return nil
}

// readMeta reads an entry's size and its directory's mtime, checking the
// directory, its meta and its lock file (ErrUnsafe).
func (c *Cache) readMeta(key string) (int64, time.Time, error) {
	dir := c.entryDir(key)
	dfd, err := c.openEntry(key)
	if err != nil {
		return 0, time.Time{}, err
	}
	defer unix.Close(dfd)
	var st unix.Stat_t
	if err := unix.Fstat(dfd, &st); err != nil {
		return 0, time.Time{}, err
	}
	mfd, err := c.openFile(dfd, "meta", filepath.Join(dir, "meta"), unix.O_RDONLY)
	if err != nil {
		return 0, time.Time{}, err
	}
	f := os.NewFile(uintptr(mfd), "meta")
	data, err := readRegular(f, filepath.Join(dir, "meta"), 64)
	f.Close()
	if err != nil {
		return 0, time.Time{}, err
	}
	size, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
	if err != nil || size < 0 {
		return 0, time.Time{}, fmt.Errorf("%s: bad meta %q", dir, data)
	}
	lfd, err := c.openFile(dfd, "lock", filepath.Join(dir, "lock"), unix.O_RDONLY)
	if err != nil {
		return 0, time.Time{}, err
	}
	unix.Close(lfd)
	return size, time.Unix(st.Mtim.Unix()), nil
}

func readRegular(f *os.File, name string, max int64) ([]byte, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", name)
	}
	if fi.Size() > max {
		return nil, fmt.Errorf("%s: %d bytes, more than %d", name, fi.Size(), max)
	}
	buf := make([]byte, fi.Size())
	n, err := f.ReadAt(buf, 0)
	if n == len(buf) {
		err = nil
	}
	return buf[:n], err
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

// dropLocked forgets an index entry (its files are gone or going).
func (c *Cache) dropLocked(el *list.Element) {
	e := el.Value.(*entry)
	if c.entries[e.key] != el {
		return
	}
	if e.pins == 0 {
		c.closeFdsLocked(e)
	}
	c.lru.Remove(el)
	delete(c.entries, e.key)
	c.total -= e.size
	c.drops.Add(1)
}

// Forget drops the index entry for key if its files vanished.
func (c *Cache) Forget(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[key]; ok && el.Value.(*entry).pins == 0 {
		if _, _, err := c.readMeta(key); err != nil {
			c.dropLocked(el)
		}
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

// evictLocked renames victims away until the total fits: entries larger
// than the whole cap first, then least recently used; pinned entries (here
// or, by flock, in another process) and keep are never taken. An
// oversized entry that must stay does not push normal entries out: they
// could not make room for it anyway. It returns the renamed directories,
// to delete after the mutex is released.
func (c *Cache) evictLocked(keep string) []string {
	if c.total <= c.max {
		return nil
	}
	var gone []string
	take := func(el *list.Element) bool {
		e := el.Value.(*entry)
		if e.pins > 0 || e.key == keep {
			return false
		}
		c.closeFdsLocked(e)
		d, ok := c.renameAwayLocked(e.key)
		if ok {
			c.evictions.Add(1)
			c.dropLocked(el)
			if d != "" {
				gone = append(gone, d)
			}
		}
		return ok
	}
	var stuck int64 // oversized entries that stay
	for el := c.lru.Back(); el != nil; {
		prev := el.Prev()
		if e := el.Value.(*entry); e.size > c.max && !take(el) {
			stuck += e.size
		}
		el = prev
	}
	for el := c.lru.Back(); el != nil && c.total-stuck > c.max; {
		prev := el.Prev()
		if el.Value.(*entry).size <= c.max {
			take(el)
		}
		el = prev
	}
	return gone
}

// renameAwayLocked moves an entry out of nar/ unless another process has
// it pinned. ok reports whether the entry is gone from nar/; the name
// returned, if any, is beneath tmp/, to delete (removeGone).
func (c *Cache) renameAwayLocked(key string) (string, bool) {
	dfd, err := unix.Openat(c.narFd, key, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err == unix.ENOENT {
		return "", true // someone else removed it
	}
	if err != nil {
		c.log.Warn("evicting cache entry", "key", key, "err", err)
		return "", false
	}
	lfd, err := unix.Openat(dfd, "lock", unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	unix.Close(dfd)
	if err == unix.ENOENT {
		return "", true // someone else removed it
	}
	if err != nil {
		c.log.Warn("evicting cache entry", "key", key, "err", err)
		return "", false
	}
	defer unix.Close(lfd)
	if err := unix.Flock(lfd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return "", false // pinned by another process
	}
	// The lock must be the one of the entry at the path now: another
	// process may have evicted what we opened and published a new copy,
	// which our rename below would take without its lock.
	if !c.lockAtPath(key, lfd) {
		return "", false
	}
	c.seq++
	c.drops.Add(1)
	to := fmt.Sprintf("evict.%d.%d", os.Getpid(), c.seq)
	if err := unix.Renameat(c.narFd, key, c.tmpFd, to); err != nil {
		if err == unix.ENOENT {
			return "", true
		}
		c.log.Warn("evicting cache entry", "key", key, "err", err)
		return "", false
	}
	return to, true
}

// Discard removes the entry for key now, unless it is pinned (here or,
// by flock, in another process): its files were found not to match what
// was verified, and the next Acquire must miss.
func (c *Cache) Discard(key string) bool {
	if !validName(key) {
		return false
	}
	c.mu.Lock()
	el, ok := c.entries[key]
	if ok && el.Value.(*entry).pins > 0 {
		c.mu.Unlock()
		return false
	}
	if ok {
		c.closeFdsLocked(el.Value.(*entry))
	}
	gone, done := c.renameAwayLocked(key)
	if done && ok {
		c.dropLocked(el)
	}
	c.mu.Unlock()
	if gone != "" {
		c.removeGone([]string{gone})
	}
	return done
}

// removeBroken deletes, at Open, an entry directory that is not a
// complete entry. A complete entry always has both meta and lock (they
// are written before the rename that publishes it), so one that lacks
// both is debris of an older layout or of hands in the cache dir; anything
// else (a live entry another process is evicting or publishing right now)
// goes only through the locking protocol. (Anything but a directory at an
// entry's name, a symlink, is refused by load before: ErrUnsafe.)
func (c *Cache) removeBroken(key string, why error) {
	dir := c.entryDir(key)
	var st unix.Stat_t
	if err := unix.Fstatat(c.narFd, key, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return // evicted by another process meanwhile
	}
	// Debris has no lock file: give it one (O_EXCL fails on a live entry,
	// which always has one), so that its removal takes the same locked way
	// as any eviction and can never take a live entry.
	if dfd, err := unix.Openat(c.narFd, key, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0); err == nil {
		if fd, err := unix.Openat(dfd, "lock", unix.O_RDONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, fileMode); err == nil {
			unix.Close(fd)
		}
		unix.Close(dfd)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	gone, ok := c.renameAwayLocked(key)
	if !ok || gone == "" {
		return
	}
	c.log.Warn("removed unreadable cache entry", "entry", dir, "err", why)
	removeAllAt(c.tmpFd, gone)
}

// removeGone deletes entries renamed away into tmp/.
func (c *Cache) removeGone(gone []string) {
	for _, d := range gone {
		removeAllAt(c.tmpFd, d)
	}
}

// removeStale deletes temp and evicted directories of processes that are
// gone.
func (c *Cache) removeStale() error {
	ents, err := names(c.tmpFd)
	if err != nil {
		return err
	}
	for _, e := range ents {
		name := strings.TrimPrefix(e, "evict.")
		pidText, _, _ := strings.Cut(name, ".")
		pid, err := strconv.Atoi(pidText)
		if err == nil && pid != os.Getpid() && processAlive(pid) {
			continue
		}
		if err := removeAllAt(c.tmpFd, e); err != nil {
			return fmt.Errorf("%s: %w", filepath.Join(c.dir, "tmp", e), err)
		}
	}
	return nil
}

// processAlive reports whether pid exists (EPERM still means it does).
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// oldLayouts are the layouts before this one: their entries (extracted
// trees; v3: large files' copies without a recorded hash) are not
// readable by this version, so they are dropped.
var oldLayouts = []string{"v1", "v2", "v3"}

// dropOldLayouts renames older layouts' directories away at once (so the
// space is accounted free from now on) and deletes them in the
// background, never following a symlink. A narfs of the older version
// still running on the same cache dir keeps its open files and fetches
// what it misses again.
func (c *Cache) dropOldLayouts() {
	for _, v := range oldLayouts {
		var st unix.Stat_t
		if unix.Fstatat(c.baseFd, v, &st, unix.AT_SYMLINK_NOFOLLOW) != nil {
			continue
		}
		gone := fmt.Sprintf("%s.dropped.%d.%d", v, os.Getpid(), time.Now().UnixNano())
		if err := unix.Renameat(c.baseFd, v, c.baseFd, gone); err != nil {
			c.log.Warn("cannot drop the local cache of an older narfs", "dir", filepath.Join(c.base, v), "err", err)
			continue
		}
		c.log.Info("dropping the local cache of an older narfs layout", "dir", filepath.Join(c.base, v))
		go removeAllAt(c.baseFd, gone)
	}
	// Leftovers of drops interrupted by an exit.
	all, _ := names(c.baseFd)
	var ms []string
	for _, n := range all {
		if v, _, ok := strings.Cut(n, ".dropped."); ok && strings.HasPrefix(v, "v") {
			ms = append(ms, n)
		}
	}
	if len(ms) > 0 {
		go func() {
			for _, m := range ms {
				removeAllAt(c.baseFd, m)
			}
		}()
	}
}
