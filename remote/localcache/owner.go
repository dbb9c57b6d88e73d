package localcache

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// ErrUnsafe: the cache directory, or a file or directory narfs uses in
// it, is not owned by the user narfs runs as, or is writable by group or
// others. What lies there is served as verified, so narfs refuses it, as
// ssh refuses a key file others can write.
// It also matches ErrLocal.
var ErrUnsafe = errors.New("unsafe local cache")

// unsafeError is an ErrUnsafe (and ErrLocal) with what and the fix.
type unsafeError struct{ msg string }

func (e *unsafeError) Error() string { return "refusing the local cache: " + e.msg }

func (e *unsafeError) Is(target error) bool { return target == ErrUnsafe || target == ErrLocal }

// unsafe says why path is refused and how to fix it.
func (c *Cache) unsafe(path, why string) error {
	euid := os.Geteuid()
	return &unsafeError{fmt.Sprintf("%s %s; narfs would serve what another user put there as verified. If you trust its contents: chown -R %d %s && chmod -R go-w %s; else remove it, or choose another --cache-dir", path, why, euid, c.base, c.base)}
}

// Modes of what narfs creates: nobody else needs to read the cache, not
// even with --allow-other. Readers of the mount never open these files:
// narfs serves their bytes itself, or, with FUSE passthrough, hands the
// kernel a descriptor narfs opened, and the kernel reads through it with
// the credentials of narfs, not of the reader.
const (
	dirMode  = 0o700
	fileMode = 0o600
)

// checkFd checks that fd is a directory (dir) or a regular file owned by
// the running user and not writable by group or others. path names it in
// the error.
func (c *Cache) checkFd(fd int, path string, dir bool) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("%s: %w: %w", path, ErrLocal, err)
	}
	want, what := uint32(unix.S_IFREG), "a regular file"
	if dir {
		want, what = unix.S_IFDIR, "a directory"
	}
	if st.Mode&unix.S_IFMT != want {
		return c.unsafe(path, "is not "+what)
	}
	return c.checkOwner(&st, path)
}

// checkOwner reports, as ssh does for its keys, a file that another user
// could have written, with the fix.
func (c *Cache) checkOwner(st *unix.Stat_t, path string) error {
	if euid := os.Geteuid(); int(st.Uid) != euid {
		return c.unsafe(path, fmt.Sprintf("is owned by uid %d, not by uid %d that narfs runs as", st.Uid, euid))
	}
	if st.Mode&0o022 != 0 {
		return c.unsafe(path, fmt.Sprintf("is writable by group or others (mode %04o)", st.Mode&0o7777))
	}
	return nil
}

// openDir opens the directory name beneath dirFd, never following a
// symlink, and checks it.
func (c *Cache) openDir(dirFd int, name, path string) (int, error) {
	fd, err := unix.Openat(dirFd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if err == unix.ELOOP || err == unix.ENOTDIR {
			return -1, c.unsafe(path, "is not a directory (narfs never follows a symlink in its cache dir)")
		}
		return -1, err
	}
	if err := c.checkFd(fd, path, true); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// mkdirOpen is openDir that creates the directory first if missing.
func (c *Cache) mkdirOpen(dirFd int, name, path string) (int, error) {
	if err := unix.Mkdirat(dirFd, name, dirMode); err != nil && err != unix.EEXIST {
		return -1, fmt.Errorf("%s: %w: %w", path, ErrLocal, err)
	}
	fd, err := c.openDir(dirFd, name, path)
	if err != nil && !errors.Is(err, ErrLocal) {
		err = fmt.Errorf("%s: %w: %w", path, ErrLocal, err)
	}
	return fd, err
}

// openFile opens the regular file name beneath dirFd (flags: O_RDONLY or
// O_RDWR), never following a symlink nor blocking on a FIFO, and checks
// it. The descriptor returned blocks.
func (c *Cache) openFile(dirFd int, name, path string, flags int) (int, error) {
	fd, err := unix.Openat(dirFd, name, flags|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err == unix.ELOOP {
		return -1, c.unsafe(path, "is a symlink (narfs never follows one in its cache dir)")
	}
	if err != nil {
		return -1, err
	}
	if err := c.checkFd(fd, path, false); err != nil {
		unix.Close(fd)
		return -1, err
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// names lists the directory dirFd.
func names(dirFd int) ([]string, error) {
	fd, err := unix.Openat(dirFd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), ".")
	defer f.Close()
	return f.Readdirnames(-1)
}

// removeAllAt deletes name beneath dirFd and, if it is a directory,
// everything in it, never following a symlink: a symlink is removed, not
// what it points to.
func removeAllAt(dirFd int, name string) error {
	err := unix.Unlinkat(dirFd, name, 0)
	if err == nil || err == unix.ENOENT {
		return nil
	}
	if err != unix.EISDIR && err != unix.EPERM {
		return err
	}
	fd, err := unix.Openat(dirFd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if err == unix.ENOENT {
			return nil
		}
		return err
	}
	f := os.NewFile(uintptr(fd), name)
	var first error
	for {
		ns, rerr := f.Readdirnames(1024)
		for _, n := range ns {
			if err := removeAllAt(fd, n); err != nil && first == nil {
				first = err
			}
		}
		if rerr == io.EOF || len(ns) == 0 {
			break
		}
		if rerr != nil {
			first = rerr
			break
		}
	}
	f.Close()
	if err := unix.Unlinkat(dirFd, name, unix.AT_REMOVEDIR); err != nil && err != unix.ENOENT && first == nil {
		first = err
	}
	return first
}
