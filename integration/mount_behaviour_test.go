package integration

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestMountReadOnly: every modification is EROFS and attributes are those
// of a Nix store.
func TestMountReadOnly(t *testing.T) {
	c := nixClosure(t)
	m := mountNarfs(t, "file://"+c.caches["zstd"], nil, "--trusted-public-keys", c.publicKey)
	app := filepath.Join(m.Dir, c.app)
	bin := filepath.Join(app, "bin/app")
	ops := map[string]func() error{
		"create":   func() error { return os.WriteFile(filepath.Join(app, "new"), nil, 0o644) },
		"write":    func() error { return os.WriteFile(bin, []byte("x"), 0o644) },
		"chmod":    func() error { return os.Chmod(bin, 0o777) },
		"rename":   func() error { return os.Rename(bin, bin+".old") },
		"unlink":   func() error { return os.Remove(bin) },
		"mkdir":    func() error { return os.Mkdir(filepath.Join(app, "d"), 0o755) },
		"symlink":  func() error { return os.Symlink("x", filepath.Join(app, "l")) },
		"truncate": func() error { return os.Truncate(bin, 0) },
		"utimes":   func() error { return os.Chtimes(bin, time.Now(), time.Now()) },
		"root create": func() error {
			return os.WriteFile(filepath.Join(m.Dir, "00000000000000000000000000000000-x"), nil, 0o644)
		},
	}
	for name, op := range ops {
		if err := op(); !errors.Is(err, syscall.EROFS) {
			t.Errorf("%s: want EROFS, got %v", name, err)
		}
	}
	for p, want := range map[string]os.FileMode{
		app: os.ModeDir | 0o555,
		bin: 0o555,
		filepath.Join(m.Dir, c.iaPaths[2], "share/doc/README"): 0o444,
		filepath.Join(m.Dir, c.iaPaths[2], "lib/libfake.so"):   os.ModeSymlink | 0o777,
	} {
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want || fi.ModTime().Unix() != 1 {
			t.Errorf("%s: mode %v mtime %v, want %v and 1970-01-01T00:00:01Z", p, fi.Mode(), fi.ModTime().UTC(), want)
		}
	}
	// Stable inode numbers across lookups.
	a, _ := os.Stat(bin)
	b, _ := os.Stat(bin)
	if a.Sys().(*syscall.Stat_t).Ino != b.Sys().(*syscall.Stat_t).Ino {
		t.Error("inode number changed between stats")
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(m.Dir, &st); err != nil || st.Namelen != 255 {
		t.Errorf("statfs: %v namelen %d", err, st.Namelen)
	}
	for _, bad := range []string{"not-a-store-path", "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-x", hashOf(c.app) + "-wrong-name", "00000000000000000000000000000000-missing"} {
		if err := statErrno(filepath.Join(m.Dir, bad)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: want ENOENT, got %v", bad, err)
		}
	}
}

// TestMountMetadataFetchesNoNAR: with .ls listings, ls -lR, stat and
// readlink of a whole closure fetch zero NAR bytes, but for store paths
// that are a single symlink, whose tiny NAR is verified before the target
// is shown.
func TestMountMetadataFetchesNoNAR(t *testing.T) {
	c := nixClosure(t)
	h := serveHTTP(t, c.caches["xz"])
	m := mountNarfs(t, h.URL, nil, "--trusted-public-keys", c.publicKey)
	var paths []string
	for _, p := range c.all {
		paths = append(paths, "'"+filepath.Join(m.Dir, p)+"'")
	}
	out, err := bashC(t, "ls -lR "+strings.Join(paths, " ")+" >/dev/null && find "+strings.Join(paths, " ")+" -type l -exec readlink {} + | wc -l")
	if err != nil {
		t.Fatalf("ls -lR: %v\n%s", err, out)
	}
	links := 0
	for _, p := range c.all {
		if fi, err := os.Lstat(filepath.Join(m.Dir, p)); err == nil && fi.Mode()&os.ModeSymlink != 0 {
			links++
		}
	}
	if n := h.narGets(); n != links {
		t.Errorf("metadata walk fetched %d NARs, want %d (the single-symlink paths)", n, links)
	}
}

// TestMountWithoutListings: a cache without .ls files still shows the right
// tree (from one pass over each NAR).
func TestMountWithoutListings(t *testing.T) {
	c := nixClosure(t)
	cache := copyDir(t, c.caches["zstd"])
	ls, _ := filepath.Glob(filepath.Join(cache, "*.ls"))
	for _, f := range ls {
		os.Remove(f)
	}
	ref := nixExtract(t, "file://"+c.caches["zstd"], c.publicKey, c.all)
	m := mountNarfs(t, "file://"+cache, nil, "--trusted-public-keys", c.publicKey)
	for _, p := range c.all {
		compareTrees(t, filepath.Join(ref, p), filepath.Join(m.Dir, p))
	}
}

// TestMountConcurrentReaders: many processes reading one cold path cause
// exactly one NAR download.
func TestMountConcurrentReaders(t *testing.T) {
	c := nixClosure(t)
	h := serveHTTP(t, c.caches["zstd"])
	m := mountNarfs(t, h.URL, nil, "--trusted-public-keys", c.publicKey)
	tree := c.caPaths[0]
	for _, p := range c.caPaths {
		if strings.HasSuffix(p, "-tree") {
			tree = p
		}
	}
	big := filepath.Join(m.Dir, tree, "big.txt")
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := bashC(t, fmt.Sprintf("cat '%s' | sha256sum", big))
			if err != nil {
				errs <- fmt.Errorf("reader %d: %v %s", i, err, out)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := h.narGets(); n != 1 {
		t.Errorf("16 concurrent readers caused %d NAR GETs, want 1", n)
	}
}

// TestMountBusyUnmount: SIGTERM while a file is open leaves the mount up
// and serving (no dead mount); once it is closed, SIGTERM unmounts.
func TestMountBusyUnmount(t *testing.T) {
	c := nixClosure(t)
	m := mountNarfs(t, "file://"+c.caches["zstd"], nil, "--trusted-public-keys", c.publicKey)
	dir := filepath.Join(m.Dir, c.app, "bin")
	hold := startProc(t, "bash", "-c", "cd '"+dir+"' && exec sleep 30")
	// Wait until the holder really sits in the mount.
	for deadline := time.Now().Add(20 * time.Second); ; {
		if cwd, _ := os.Readlink(fmt.Sprintf("/proc/%d/cwd", hold.Process.Pid)); cwd == dir {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the holder process never entered the mount")
		}
		time.Sleep(10 * time.Millisecond)
	}
	m.cmd.Process.Signal(syscall.SIGTERM)
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(m.Log(), "unmount failed") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(m.Log(), "unmount failed") || !isMounted(m.Dir) {
		t.Fatalf("busy mount: want it kept and a log line\n%s", m.Log())
	}
	if _, err := os.ReadFile(filepath.Join(dir, "app")); err != nil {
		t.Errorf("still serving after a refused unmount: %v", err)
	}
	hold.Process.Kill()
	hold.Wait()
	// mountNarfs's cleanup sends SIGTERM again and checks the unmount.
}

// TestMountSignalRightAfterReady: SIGTERM the moment the mount is ready
// must still unmount cleanly (the cleanup of mountNarfs checks), never
// kill the daemon and leave a dead mount.
func TestMountSignalRightAfterReady(t *testing.T) {
	c := nixClosure(t)
	for i := range 5 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			mountNarfs(t, "file://"+c.caches["zstd"], nil, "--trusted-public-keys", c.publicKey)
		})
	}
}
