package localcache

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// nobody is a uid that is not the test's.
const nobody = 65534

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to give files to another user")
	}
}

// outside makes a directory outside the cache dir with a file in it, and
// returns it with a check that the file is still there, unchanged.
func outside(t *testing.T) (string, func()) {
	t.Helper()
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, func() {
		t.Helper()
		data, err := os.ReadFile(victim)
		if err != nil || string(data) != "precious" {
			t.Errorf("a file outside the cache dir was touched: %q, %v", data, err)
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 1 {
			t.Errorf("files appeared outside the cache dir: %v", ents)
		}
	}
}

// A cache dir, or a directory or entry in it, that another user owns or
// could write is refused with an error that names it and the fix.
func TestRefusesCacheDirOthersCanWrite(t *testing.T) {
	needRoot(t)
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, base string) string // returns the path to blame
	}{
		{"base owned by another user", func(t *testing.T, base string) string {
			must(t, os.Chown(base, nobody, nobody))
			return base
		}},
		{"base writable by group", func(t *testing.T, base string) string {
			must(t, os.Chmod(base, 0o770))
			return base
		}},
		{"base writable by others, sticky", func(t *testing.T, base string) string {
			must(t, os.Chmod(base, 0o1777))
			return base
		}},
		{"layout dir owned by another user", func(t *testing.T, base string) string {
			p := filepath.Join(base, layout)
			must(t, os.Chown(p, nobody, nobody))
			return p
		}},
		{"nar/ writable by others", func(t *testing.T, base string) string {
			p := filepath.Join(base, layout, "nar")
			must(t, os.Chmod(p, 0o777))
			return p
		}},
		{"a records namespace owned by another user", func(t *testing.T, base string) string {
			p := filepath.Join(base, layout, "records", "ns")
			must(t, os.Mkdir(p, 0o700))
			must(t, os.Chown(p, nobody, nobody))
			return p
		}},
		{"an entry owned by another user", func(t *testing.T, base string) string {
			c := open(t, base, 1<<20)
			e, err := put(t, c, "k", "x")
			must(t, err)
			e.Release()
			c.Close()
			p := filepath.Join(base, layout, "nar", "k")
			must(t, os.Chown(p, nobody, nobody))
			return p
		}},
		{"an entry's meta writable by group", func(t *testing.T, base string) string {
			c := open(t, base, 1<<20)
			e, err := put(t, c, "k", "x")
			must(t, err)
			e.Release()
			c.Close()
			p := filepath.Join(base, layout, "nar", "k", "meta")
			must(t, os.Chmod(p, 0o660))
			return p
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			c := open(t, base, 1<<20) // creates the layout
			c.Close()
			blame := tc.setup(t, base)
			_, err := Open(base, 1<<20, quiet())
			if !errors.Is(err, ErrUnsafe) {
				t.Fatalf("Open: %v, want ErrUnsafe", err)
			}
			msg := err.Error()
			for _, want := range []string{blame, "chown -R 0 " + base, "chmod -R go-w " + base} {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not say %q", msg, want)
				}
			}
		})
	}
}

// A file narfs opens in an entry is checked when it is opened, not only
// at start: one another user owns (given away after Open) is not served.
func TestOpenChecksOwnerAtOpenTime(t *testing.T) {
	needRoot(t)
	c := open(t, t.TempDir(), 1<<20)
	e, err := put(t, c, "k", "x")
	must(t, err)
	defer e.Release()
	must(t, e.PublishData("blob", func(f *os.File) error { _, err := f.WriteString("verified"); return err }))
	must(t, os.Chown(filepath.Join(c.entryDir("k"), "blob"), nobody, nobody))
	if f, err := e.OpenRead("blob"); !errors.Is(err, ErrUnsafe) {
		if f != nil {
			f.Close()
		}
		t.Errorf("OpenRead of a file another user owns: %v, want ErrUnsafe", err)
	}
	must(t, os.Chown(filepath.Join(c.entryDir("k"), "root", "f"), nobody, nobody))
	if _, err := readFile(t, e, "f"); !errors.Is(err, ErrUnsafe) {
		t.Errorf("OpenFile of a file another user owns: %v, want ErrUnsafe", err)
	}
	must(t, c.PutRecord("ns", "r", []byte("rec")))
	must(t, os.Chmod(filepath.Join(c.dir, "records", "ns", "r"), 0o666))
	if _, _, err := c.GetRecord("ns", "r"); !errors.Is(err, ErrUnsafe) {
		t.Errorf("GetRecord of a record others can write: %v, want ErrUnsafe", err)
	}
}

// No symlink in the cache dir is followed: not by the clean-up at start
// (which must not delete what a planted link points to), not for
// records, entries or locks.
func TestNeverFollowsSymlinksInCacheDir(t *testing.T) {
	t.Run("tmp", func(t *testing.T) {
		base := t.TempDir()
		c := open(t, base, 1<<20)
		c.Close()
		out, untouched := outside(t)
		tmp := filepath.Join(base, layout, "tmp")
		must(t, os.Remove(tmp))
		must(t, os.Symlink(out, tmp))
		if _, err := Open(base, 1<<20, quiet()); !errors.Is(err, ErrUnsafe) {
			t.Errorf("Open with tmp/ a symlink: %v, want ErrUnsafe", err)
		}
		untouched()
	})
	t.Run("stale temp entry", func(t *testing.T) {
		base := t.TempDir()
		c := open(t, base, 1<<20)
		c.Close()
		out, untouched := outside(t)
		// A temp entry of a process that is gone, as a link.
		must(t, os.Symlink(out, filepath.Join(base, layout, "tmp", "999999999.1")))
		open(t, base, 1<<20)
		untouched()
		if _, err := os.Lstat(filepath.Join(base, layout, "tmp", "999999999.1")); !os.IsNotExist(err) {
			t.Errorf("the stale link is still there: %v", err)
		}
	})
	t.Run("old layout", func(t *testing.T) {
		base := t.TempDir()
		out, untouched := outside(t)
		must(t, os.Symlink(out, filepath.Join(base, "v2")))
		must(t, os.Symlink(out, filepath.Join(base, "v1.dropped.1.2")))
		c := open(t, base, 1<<20)
		c.Close()
		for i := 0; i < 50; i++ { // deletions run in the background
			if ms, _ := filepath.Glob(filepath.Join(base, "v*.dropped.*")); len(ms) == 0 {
				break
			}
			sleepShort()
		}
		untouched()
	})
	t.Run("records namespace", func(t *testing.T) {
		base := t.TempDir()
		c := open(t, base, 1<<20)
		c.Close()
		out, untouched := outside(t)
		must(t, os.Symlink(out, filepath.Join(base, layout, "records", "ns")))
		if _, err := Open(base, 1<<20, quiet()); !errors.Is(err, ErrUnsafe) {
			t.Errorf("Open with a records namespace a symlink: %v, want ErrUnsafe", err)
		}
		untouched()
	})
	t.Run("record", func(t *testing.T) {
		base := t.TempDir()
		c := open(t, base, 1<<20)
		must(t, c.PutRecord("ns", "other", []byte("x"))) // makes ns/
		out, untouched := outside(t)
		link := filepath.Join(base, layout, "records", "ns", "r")
		must(t, os.Symlink(filepath.Join(out, "victim"), link))
		if _, _, err := c.GetRecord("ns", "r"); err == nil {
			t.Error("GetRecord followed a symlink")
		}
		must(t, c.PutRecord("ns", "r", []byte("mine")))
		untouched()
		if data, _, err := c.GetRecord("ns", "r"); err != nil || string(data) != "mine" {
			t.Errorf("GetRecord after PutRecord over a link: %q, %v", data, err)
		}
	})
	t.Run("entry", func(t *testing.T) {
		base := t.TempDir()
		c := open(t, base, 1<<20)
		c.Close()
		// A complete-looking entry outside, linked in.
		out, untouched := outside(t)
		must(t, os.WriteFile(filepath.Join(out, "meta"), []byte("1\n"), 0o600))
		must(t, os.WriteFile(filepath.Join(out, "lock"), nil, 0o600))
		untouchedEntry := func() {
			t.Helper()
			for _, n := range []string{"meta", "lock"} {
				if _, err := os.Stat(filepath.Join(out, n)); err != nil {
					t.Errorf("the linked entry's %s was removed: %v", n, err)
				}
			}
			must(t, os.Remove(filepath.Join(out, "meta")))
			must(t, os.Remove(filepath.Join(out, "lock")))
			untouched()
		}
		must(t, os.Symlink(out, filepath.Join(base, layout, "nar", "k")))
		if _, err := Open(base, 1<<20, quiet()); !errors.Is(err, ErrUnsafe) {
			t.Errorf("Open with an entry a symlink: %v, want ErrUnsafe", err)
		}
		untouchedEntry()
	})
	t.Run("lock", func(t *testing.T) {
		base := t.TempDir()
		c := open(t, base, 1<<20)
		e, err := put(t, c, "k", "x")
		must(t, err)
		e.Release()
		c.Close()
		out, untouched := outside(t)
		lock := filepath.Join(base, layout, "nar", "k", "lock")
		must(t, os.Remove(lock))
		must(t, os.Symlink(filepath.Join(out, "victim"), lock))
		if _, err := Open(base, 1<<20, quiet()); !errors.Is(err, ErrUnsafe) {
			t.Errorf("Open with an entry's lock a symlink: %v, want ErrUnsafe", err)
		}
		untouched()
		// Planted after Open: not locked through, not served.
		must(t, os.Remove(lock))
		must(t, os.WriteFile(lock, nil, 0o600))
		c = open(t, base, 1<<20)
		must(t, os.Remove(lock))
		must(t, os.Symlink(filepath.Join(out, "victim"), lock))
		if e, err := c.Acquire("k"); err == nil {
			e.Release()
			t.Error("Acquire locked through a symlink")
		}
		untouched()
	})
}

// What narfs creates in the cache dir is readable by its user only.
func TestCreatedFilesArePrivate(t *testing.T) {
	base := filepath.Join(t.TempDir(), "cache")
	c := open(t, base, 1<<30)
	p, err := c.Begin()
	must(t, err)
	f, err := p.CreateFile("blob")
	must(t, err)
	f.Close()
	must(t, p.WriteMeta("listing.json", []byte("{}")))
	e, err := p.Commit("k", 1)
	must(t, err)
	must(t, e.PublishData("f-1", func(f *os.File) error { _, err := f.WriteString("x"); return err }))
	e.Release()
	must(t, c.PutRecord("ns", "r", []byte("rec")))
	n := 0
	err = filepath.WalkDir(base, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		n++
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s: mode %v, want no group or other bits", path, fi.Mode())
		}
		return nil
	})
	must(t, err)
	if n < 10 {
		t.Errorf("walked %d files, expected the whole layout", n)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func sleepShort() { time.Sleep(10 * time.Millisecond) }
