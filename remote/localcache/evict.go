package localcache

import (
	"container/list"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

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

// removeGone deletes entries renamed away into tmp/.
func (c *Cache) removeGone(gone []string) {
	for _, d := range gone {
		removeAllAt(c.tmpFd, d)
	}
}
