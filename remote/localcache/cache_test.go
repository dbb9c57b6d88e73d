package localcache

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func open(t testing.TB, dir string, max int64) *Cache {
	t.Helper()
	c, err := Open(dir, max, quiet())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// put commits an entry holding root/f = contents and returns it pinned.
func put(t testing.TB, c *Cache, key, contents string) (*Entry, error) {
	p, err := c.Begin()
	if err != nil {
		return nil, err
	}
	if err := os.Mkdir(p.Root(), 0o755); err != nil {
		p.Abort()
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(p.Root(), "f"), []byte(contents), 0o444); err != nil {
		p.Abort()
		return nil, err
	}
	return p.Commit(key, int64(len(contents)))
}

func readFile(t testing.TB, e *Entry, sub string) (string, error) {
	f, err := e.OpenFile(sub)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	return string(b), err
}

func TestPinBlocksEviction(t *testing.T) {
	c := open(t, t.TempDir(), 10)
	a, err := put(t, c, "a", "aaaaaaaa")
	if err != nil {
		t.Fatal(err)
	}
	b, err := put(t, c, "b", "bbbbbbbb") // over the cap, but a is pinned
	if err != nil {
		t.Fatal(err)
	}
	if got, err := readFile(t, a, "f"); err != nil || got != "aaaaaaaa" {
		t.Fatalf("pinned entry: %q %v", got, err)
	}
	b.Release()
	a.Release() // a was used last: b, the least recently used, goes
	if _, err := c.Acquire("b"); !errors.Is(err, ErrMiss) {
		t.Errorf("Acquire(b) after eviction: %v, want ErrMiss", err)
	}
	if e, err := c.Acquire("a"); err != nil {
		t.Errorf("Acquire(a): %v", err)
	} else {
		e.Release()
	}
	if u := c.Usage(); u > 10 {
		t.Errorf("usage %d, cap 10", u)
	}
}

// An entry larger than the whole cap is served while pinned and is the
// first to go once it is not.
func TestOversizedEntryGoesFirst(t *testing.T) {
	c := open(t, t.TempDir(), 10)
	small, _ := put(t, c, "small", "12345")
	small.Release()
	big, err := put(t, c, "big", "0123456789abcdef")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := readFile(t, big, "f"); err != nil || got != "0123456789abcdef" {
		t.Fatalf("oversized entry while pinned: %q %v", got, err)
	}
	big.Release()
	other, _ := put(t, c, "other", "678")
	other.Release()
	if _, err := c.Acquire("big"); !errors.Is(err, ErrMiss) {
		t.Errorf("the oversized entry survived the next commit: %v", err)
	}
	for _, k := range []string{"small", "other"} {
		if e, err := c.Acquire(k); err != nil {
			t.Errorf("%s evicted instead of the oversized entry: %v", k, err)
		} else {
			e.Release()
		}
	}
}

func TestOpenNeverFollowsSymlinks(t *testing.T) {
	c := open(t, t.TempDir(), 1<<20)
	host := t.TempDir()
	os.WriteFile(filepath.Join(host, "secret"), []byte("host"), 0o644)
	syscall.Mkfifo(filepath.Join(host, "fifo"), 0o644)
	p, _ := c.Begin()
	os.Mkdir(p.Root(), 0o755)
	os.Symlink(host, filepath.Join(p.Root(), "dir"))
	os.Symlink(filepath.Join(host, "secret"), filepath.Join(p.Root(), "abs"))
	os.Symlink("../../../..", filepath.Join(p.Root(), "up"))
	syscall.Mkfifo(filepath.Join(p.Root(), "fifo"), 0o644)
	os.WriteFile(filepath.Join(p.Root(), "ok"), []byte("fine"), 0o444)
	e, err := p.Commit("k", 4)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Release()
	for _, sub := range []string{"dir/secret", "abs", "up/etc/passwd", "../meta", "fifo", "dir/fifo", "./ok", "ok/", ""} {
		done := make(chan error, 1)
		go func() { _, err := readFile(t, e, sub); done <- err }()
		select {
		case err := <-done:
			if err == nil {
				t.Errorf("OpenFile(%q) succeeded", sub)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("OpenFile(%q) blocked", sub)
		}
	}
	if got, err := readFile(t, e, "ok"); err != nil || got != "fine" {
		t.Errorf("OpenFile(ok) = %q %v", got, err)
	}
}

func TestRestartKeepsEntriesAndOrder(t *testing.T) {
	dir := t.TempDir()
	c := open(t, dir, 100)
	for _, k := range []string{"old", "new"} {
		e, err := put(t, c, k, "0123456789")
		if err != nil {
			t.Fatal(err)
		}
		e.Release()
	}
	past := time.Now().Add(-time.Hour)
	os.Chtimes(filepath.Join(dir, layout, "nar", "old"), past, past)
	stale := filepath.Join(dir, layout, "tmp", "999999999.1")
	os.MkdirAll(stale, 0o755)
	c.Close()
	c2 := open(t, dir, 25)
	if u := c2.Usage(); u != 20 {
		t.Errorf("usage after restart %d, want 20", u)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Error("a dead process's temp dir survived the restart")
	}
	e, _ := put(t, c2, "third", "0123456789")
	e.Release()
	if _, err := c2.Acquire("old"); !errors.Is(err, ErrMiss) {
		t.Errorf("the least recently used entry survived: %v", err)
	}
}

func TestRecords(t *testing.T) {
	c := open(t, t.TempDir(), 1)
	if _, _, err := c.GetRecord("ns", "x.narinfo"); !errors.Is(err, ErrMiss) {
		t.Errorf("absent record: %v", err)
	}
	if err := c.PutRecord("ns", "x.narinfo", []byte("one")); err != nil {
		t.Fatal(err)
	}
	data, when, err := c.GetRecord("ns", "x.narinfo")
	if err != nil || string(data) != "one" || time.Since(when) > time.Minute {
		t.Errorf("GetRecord = %q %v %v", data, when, err)
	}
	for _, bad := range []string{"../x", "a/b", "", "X"} {
		if err := c.PutRecord("ns", bad, nil); err == nil {
			t.Errorf("PutRecord(%q) accepted", bad)
		}
	}
}

// hammer is one reader loop: acquire or commit, open, check the bytes.
func hammer(t testing.TB, c *Cache, keys, rounds int, id string) error {
	for i := range rounds {
		key := "k" + strconv.Itoa(i%keys)
		want := "contents of " + key
		e, err := c.Acquire(key)
		if errors.Is(err, ErrMiss) {
			e, err = put(t, c, key, want)
		}
		if err != nil {
			if errors.Is(err, ErrMiss) {
				continue // evicted by the other process in the instant after commit
			}
			return fmt.Errorf("%s round %d: %w", id, i, err)
		}
		got, err := readFile(t, e, "f")
		e.Release()
		if err != nil || got != want {
			return fmt.Errorf("%s round %d: read %q, %v", id, i, got, err)
		}
	}
	return nil
}

// Many readers, a cap of about two entries: opens never fail.
func TestConcurrentReadersUnderPressure(t *testing.T) {
	c := open(t, t.TempDir(), 2*int64(len("contents of k0")))
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := hammer(t, c, 6, 300, fmt.Sprint("reader", g)); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// Two processes sharing one cache dir, each evicting under a tiny cap:
// neither deletes what the other is opening.
func TestTwoProcessesShareOneDir(t *testing.T) {
	if dir := os.Getenv("LOCALCACHE_SHARED_DIR"); dir != "" {
		c := open(t, dir, 2*int64(len("contents of k0")))
		if err := hammer(t, c, 5, 2000, fmt.Sprint("pid", os.Getpid())); err != nil {
			t.Fatal(err)
		}
		return
	}
	dir := t.TempDir()
	var cmds []*exec.Cmd
	for range 2 {
		cmd := exec.Command(os.Args[0], "-test.run", "^TestTwoProcessesShareOneDir$", "-test.count=1")
		cmd.Env = append(os.Environ(), "LOCALCACHE_SHARED_DIR="+dir)
		out := &lockedBuf{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("child output:\n%s", out.String())
			}
		})
	}
	for _, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Errorf("a process saw a spurious error: %v", err)
		}
	}
}

type lockedBuf struct {
	mu sync.Mutex
	b  []byte
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b = append(l.b, p...)
	return len(p), nil
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.b)
}

// A full disk is a local failure, with ENOSPC visible through the wrapping.
func TestDiskFullIsLocal(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=64k,mode=0700"); err != nil {
		t.Skipf("cannot mount tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	c := open(t, dir, 1<<30)
	big := make([]byte, 1<<20)
	_, err := put(t, c, "big", string(big))
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("commit on a full disk: %v, want ENOSPC", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, layout, "tmp")); len(ents) != 0 {
		t.Errorf("left %d temp entries", len(ents))
	}
}

func TestOldLayoutDropped(t *testing.T) {
	dir := t.TempDir()
	old := filepath.Join(dir, "v2", "nar", "somekey", "root")
	if err := os.MkdirAll(old, 0o755); err != nil {
		t.Fatal(err)
	}
	c, err := Open(dir, 1<<20, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := os.Lstat(filepath.Join(dir, "v2")); !os.IsNotExist(err) {
		t.Fatalf("v2 still there: %v", err)
	}
	// Deleted in the background, soon.
	for i := 0; ; i++ {
		ms, _ := filepath.Glob(filepath.Join(dir, "v2*"))
		if len(ms) == 0 {
			break
		}
		if i > 200 {
			t.Fatalf("old layout not deleted: %v", ms)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A data file published beside an entry's NAR counts against the cap, in
// this process and after a restart, and pushes older entries out.
func TestPublishedDataIsAccounted(t *testing.T) {
	dir := t.TempDir()
	c := open(t, dir, 20)
	old, _ := put(t, c, "old", "0123456789")
	old.Release()
	e, err := put(t, c, "blob", "abcde")
	if err != nil {
		t.Fatal(err)
	}
	if u := c.Usage(); u != 15 {
		t.Fatalf("usage %d before publishing, want 15", u)
	}
	err = e.PublishData("f-0", func(f *os.File) error {
		_, err := f.WriteString("0123456789")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if u := c.Usage(); u != 15 {
		t.Errorf("usage %d after publishing 10 bytes into a 20-byte cap holding 15, want 15 (old evicted, blob now 15)", u)
	}
	if _, err := c.Acquire("old"); !errors.Is(err, ErrMiss) {
		t.Errorf("the older entry survived the growth past the cap: %v", err)
	}
	// Publishing the same name again (another reader won) adds nothing.
	e.PublishData("f-0", func(f *os.File) error { _, err := f.WriteString("0123456789"); return err })
	if u := c.Usage(); u != 15 {
		t.Errorf("usage %d after a duplicate publish, want 15", u)
	}
	e.Release()
	c.Close()
	c2 := open(t, dir, 20)
	if u := c2.Usage(); u != 15 {
		t.Errorf("usage %d after a restart, want the grown 15", u)
	}
}
