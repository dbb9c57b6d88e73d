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
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

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
