package integration

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/narfs/narfs/nar"
)

// TestMountLieReplacedByVerifiedListing: a .ls that lies within what the
// signed NarSize allows (a size inside the same 8-byte padding) is what
// the mount shows before the NAR is fetched; the moment the NAR is
// verified, every answer and the kernel's caches reflect the NAR: cat
// returns every verified byte, not the lie's count, and stat says so.
func TestMountLieReplacedByVerifiedListing(t *testing.T) {
	c := nixClosure(t)
	dir := copyDir(t, c.caches["none"])
	lib := c.iaPaths[2]
	lsPath := filepath.Join(dir, lib[:32]+".ls")
	data, err := os.ReadFile(lsPath)
	if err != nil {
		t.Fatal(err)
	}
	l, err := nar.DecodeListing(data)
	if err != nil {
		t.Fatal(err)
	}
	readme, err := l.Find("share/doc/README")
	if err != nil {
		t.Fatal(err)
	}
	real := readme.Size // "narfs integration\n"
	readme.Size--       // same NAR length: the padding absorbs it
	var b strings.Builder
	if err := l.Encode(&b); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(lsPath, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}

	for _, mode := range []string{"--no-open=false", "--no-open"} {
		t.Run(mode, func(t *testing.T) {
			m := mountNarfs(t, "file://"+dir, nil, "--trusted-public-keys", c.publicKey, mode)
			p := filepath.Join(m.Dir, lib, "share/doc/README")
			out, err := bashC(t, "stat -c %s "+p)
			if err != nil || strings.TrimSpace(out) != itoa(real-1) {
				t.Fatalf("before the NAR: stat says %q (%v), want the .ls's %d", out, err, real-1)
			}
			out, err = bashC(t, "cat "+p)
			if mode == "--no-open" && err != nil {
				// Without OPEN, the first read is sized by the lie before
				// anything is verified: it fails rather than answer short.
				out, err = bashC(t, "cat "+p)
			}
			if err != nil || out != "narfs integration\n" {
				t.Errorf("cat = %q, %v; want all %d verified bytes", out, err, real)
			}
			out, err = bashC(t, "stat -c %s "+p)
			if err != nil || strings.TrimSpace(out) != itoa(real) {
				t.Errorf("after the NAR: stat says %q (%v), want the verified %d", out, err, real)
			}
			if !m.waitLog("disagrees with the verified NAR") {
				t.Errorf("the lie was not logged:\n%s", m.Log())
			}
		})
	}
}

// TestMountErrnosReadersSee: with the cache gone (connection refused), a
// reader gets EIO, never ECONNREFUSED, and the log says why.
func TestMountErrnosReadersSee(t *testing.T) {
	c := nixClosure(t)
	for _, mode := range []string{"--no-open=false", "--no-open"} {
		t.Run(mode, func(t *testing.T) {
			f := serveFaulty(t, c.caches["none"])
			m := mountNarfs(t, f.URL, nil, "--trusted-public-keys", c.publicKey, "--timeout", "2s", mode)
			readme := filepath.Join(m.Dir, c.iaPaths[2], "share/doc/README")
			if _, err := os.Stat(readme); err != nil {
				t.Fatal(err)
			}
			f.close()
			// Without OPEN the error comes with the first read.
			_, err := os.ReadFile(readme)
			if errno, ok := underlyingErrno(err); !ok || errno != syscall.EIO {
				t.Errorf("read with the cache down: %v, want EIO", err)
			}
			if !m.waitLog("connection refused") {
				t.Errorf("the cause is not in the log:\n%s", m.Log())
			}
		})
	}
}

// TestMountAfterSIGKILL: a daemon killed with SIGKILL leaves a dead FUSE
// mount; the next `narfs mount` there detaches it and mounts.
func TestMountAfterSIGKILL(t *testing.T) {
	c := nixClosure(t)
	url := "file://" + c.caches["none"]
	args := []string{"--cache-dir", t.TempDir(), "--trusted-public-keys", c.publicKey}
	m := startMount(t, narfsBin, url, nil, args...)
	m.cmd.Process.Kill()
	<-m.exited
	if !isMounted(m.Dir) {
		t.Fatal("SIGKILL left no mount behind; nothing to test")
	}
	m2 := startMountAt(t, narfsBin, url, m.Dir, nil, args...)
	defer m2.stop(t)
	if !strings.Contains(m2.Log(), "detached a dead narfs mount") {
		t.Errorf("the second mount did not say it detached the dead one:\n%s", m2.Log())
	}
	if out, err := bashC(t, "cat "+filepath.Join(m.Dir, c.iaPaths[2], "share/doc/README")); err != nil || out != "narfs integration\n" {
		t.Errorf("reading through the new mount: %q %v", out, err)
	}
}

func underlyingErrno(err error) (syscall.Errno, bool) {
	var errno syscall.Errno
	ok := errors.As(err, &errno)
	return errno, ok
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
