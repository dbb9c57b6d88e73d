package remote

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
	"syscall"
	"time"
)

// cacheLayout is bumped whenever the on-disk layout changes; older trees
// are ignored (and can be deleted by hand).
const cacheLayout = "v1"

// diskCache holds extracted, verified NARs under <dir>/v1/nar/<NarHash>/:
//
//	root      the store path itself (directory, file or symlink)
//	meta      NarSize, for accounting without walking the tree
//
// An entry appears by rename(2) of a fully written and verified temporary
// directory, so its presence is the proof of verification, across
// restarts too. Keys are NarHashes, so two caches (or two store paths)
// with the same contents share one entry. Eviction unlinks entries; open
// descriptors (and kernel passthrough) keep working on unlinked files.
type diskCache struct {
	// read-only after open
	dir string // <CacheDir>/v1
	max int64
	log *slog.Logger

	mu      sync.Mutex // protects the fields below
	entries map[string]*list.Element
	lru     *list.List // front = most recently used; values are *cacheEntry
	total   int64
	tmpSeq  int
}

type cacheEntry struct {
	key     string
	size    int64
	touched time.Time // last mtime update, which carries LRU order across restarts
}

// touchEvery bounds the mtime updates that record use on disk.
const touchEvery = time.Minute

func openDiskCache(base string, max int64, log *slog.Logger) (*diskCache, error) {
	c := &diskCache{
		dir:     filepath.Join(base, cacheLayout),
		max:     max,
		log:     log,
		entries: make(map[string]*list.Element),
		lru:     list.New(),
	}
	for _, d := range []string{"nar", "tmp"} {
		if err := os.MkdirAll(filepath.Join(c.dir, d), 0o755); err != nil {
			return nil, fmt.Errorf("cache dir: %w", err)
		}
	}
	// Leftovers of an interrupted run were never verified. Another live
	// narfs may share the directory: keep what its processes are writing.
	if err := removeStale(filepath.Join(c.dir, "tmp")); err != nil {
		return nil, fmt.Errorf("cache dir: %w", err)
	}
	if err := c.load(); err != nil {
		return nil, fmt.Errorf("cache dir: %w", err)
	}
	return c, nil
}

// load indexes existing entries, oldest first in LRU order.
func (c *diskCache) load() error {
	ents, err := os.ReadDir(filepath.Join(c.dir, "nar"))
	if err != nil {
		return err
	}
	type found struct {
		key   string
		size  int64
		mtime int64
	}
	var all []found
	for _, e := range ents {
		p := filepath.Join(c.dir, "nar", e.Name())
		data, err := os.ReadFile(filepath.Join(p, "meta"))
		size, perr := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
		fi, serr := os.Stat(p)
		if err != nil || perr != nil || serr != nil {
			c.log.Warn("removing unreadable cache entry", "entry", p)
			os.RemoveAll(p)
			continue
		}
		all = append(all, found{e.Name(), size, fi.ModTime().UnixNano()})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].mtime > all[j].mtime })
	for _, f := range all {
		c.entries[f.key] = c.lru.PushBack(&cacheEntry{key: f.key, size: f.size, touched: time.Unix(0, f.mtime)})
		c.total += f.size
	}
	return nil
}

// root returns the extracted store path for key, or "" when absent.
func (c *diskCache) root(key string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.entries[key]
	if !ok {
		return ""
	}
	c.lru.MoveToFront(el)
	dir := filepath.Join(c.dir, "nar", key)
	if e := el.Value.(*cacheEntry); time.Since(e.touched) > touchEvery {
		e.touched = time.Now()
		os.Chtimes(dir, e.touched, e.touched)
	}
	return filepath.Join(dir, "root")
}

// tempDir makes a private directory to extract into.
func (c *diskCache) tempDir() (string, error) {
	c.mu.Lock()
	c.tmpSeq++
	seq := c.tmpSeq
	c.mu.Unlock()
	d := filepath.Join(c.dir, "tmp", fmt.Sprintf("%d.%d", os.Getpid(), seq))
	if err := os.RemoveAll(d); err != nil {
		return "", err
	}
	return d, os.Mkdir(d, 0o755)
}

// commit moves a verified temporary directory into place and returns the
// entry's root, evicting older entries past the size cap.
func (c *diskCache) commit(tmp, key string, size int64) (string, error) {
	if err := os.WriteFile(filepath.Join(tmp, "meta"), []byte(strconv.FormatInt(size, 10)+"\n"), 0o644); err != nil {
		return "", err
	}
	final := filepath.Join(c.dir, "nar", key)
	if err := os.Rename(tmp, final); err != nil {
		// Another narfs sharing the cache dir got there first: its copy
		// was verified against the same hash.
		if _, serr := os.Stat(filepath.Join(final, "meta")); serr != nil {
			return "", err
		}
		os.RemoveAll(tmp)
	}
	c.mu.Lock()
	if _, ok := c.entries[key]; !ok {
		c.entries[key] = c.lru.PushFront(&cacheEntry{key: key, size: size})
		c.total += size
	}
	victims := c.evictLocked(key)
	c.mu.Unlock()
	for _, v := range victims {
		c.remove(v)
	}
	return filepath.Join(final, "root"), nil
}

// evictLocked picks least recently used entries until the total fits,
// never the one just added.
func (c *diskCache) evictLocked(keep string) []string {
	var victims []string
	for c.total > c.max {
		el := c.lru.Back()
		if el == nil {
			break
		}
		e := el.Value.(*cacheEntry)
		if e.key == keep {
			break
		}
		c.lru.Remove(el)
		delete(c.entries, e.key)
		c.total -= e.size
		victims = append(victims, e.key)
	}
	return victims
}

func (c *diskCache) remove(key string) {
	c.mu.Lock()
	c.tmpSeq++
	seq := c.tmpSeq
	c.mu.Unlock()
	// Rename first so a concurrent commit of the same key never sees a
	// half-deleted tree.
	gone := filepath.Join(c.dir, "tmp", fmt.Sprintf("evict.%d.%d", os.Getpid(), seq))
	if err := os.Rename(filepath.Join(c.dir, "nar", key), gone); err != nil {
		c.log.Warn("evicting cache entry", "key", key, "err", err)
		return
	}
	os.RemoveAll(gone)
}

// forget drops an index entry whose files are gone from disk.
func (c *diskCache) forget(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[key]; ok {
		c.lru.Remove(el)
		delete(c.entries, key)
		c.total -= el.Value.(*cacheEntry).size
	}
}

func (c *diskCache) usage() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total
}

// removeStale deletes the entries of dir (named "<pid>.<n>" or
// "evict.<pid>.<n>") whose process is gone.
func removeStale(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		name := strings.TrimPrefix(e.Name(), "evict.")
		pidText, _, _ := strings.Cut(name, ".")
		pid, err := strconv.Atoi(pidText)
		if err == nil && pid != os.Getpid() && processAlive(pid) {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// processAlive reports whether pid exists (EPERM still means it does).
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
