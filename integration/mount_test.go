package integration

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// mounted is one running `narfs mount`.
type mounted struct {
	Dir     string
	cmd     *exec.Cmd
	exited  chan error
	drained chan struct{} // closed when the log pipe hits EOF
	startup time.Duration // exec to the "mounted" log line
	stopped sync.Once
	mu      sync.Mutex // protects log
	log     bytes.Buffer
}

// Log is everything the daemon wrote so far.
func (m *mounted) Log() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.log.String()
}

func (m *mounted) Write(p []byte) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.log.Write(p)
}

// mountNarfs runs `narfs mount [args] URL DIR` and waits for its "mounted"
// line; cleanup sends SIGTERM and checks the mount is gone.
func mountNarfs(t testing.TB, url string, env []string, args ...string) *mounted {
	t.Helper()
	requireE2E(t)
	m := startMount(t, narfsBin, url, env, append([]string{"--cache-dir", t.TempDir(), "--log-level", "debug"}, args...)...)
	t.Cleanup(func() {
		m.stop(t)
		if t.Failed() {
			t.Logf("narfs log:\n%s", m.Log())
		}
		if strings.Contains(m.Log(), "DATA RACE") {
			t.Errorf("the daemon reported a data race:\n%s", m.Log())
		}
	})
	return m
}

// startMount runs `BIN mount [args] URL DIR` and waits for the "mounted"
// line. The caller stops it.
func startMount(t testing.TB, bin, url string, env []string, args ...string) *mounted {
	t.Helper()
	return startMountAt(t, bin, url, t.TempDir(), env, args...)
}

// startMountAt is startMount on a given mountpoint.
func startMountAt(t testing.TB, bin, url, dir string, env []string, args ...string) *mounted {
	t.Helper()
	m := &mounted{Dir: dir, exited: make(chan error, 1), drained: make(chan struct{})}
	m.cmd = exec.Command(bin, append(append([]string{"mount"}, args...), url, m.Dir)...)
	m.cmd.Env = append(os.Environ(), env...)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	m.cmd.Stdout, m.cmd.Stderr = pw, pw
	start := time.Now()
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	ready := make(chan struct{})
	go func() {
		defer close(m.drained)
		defer pr.Close()
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var once sync.Once
		for sc.Scan() {
			m.Write([]byte(sc.Text() + "\n"))
			if strings.Contains(sc.Text(), "msg=mounted") {
				once.Do(func() { close(ready) })
			}
		}
	}()
	go func() { m.exited <- m.cmd.Wait() }()
	select {
	case <-ready:
		m.startup = time.Since(start)
	case err := <-m.exited:
		t.Fatalf("narfs mount exited before mounting: %v\n%s", err, m.Log())
	case <-time.After(60 * time.Second):
		m.cmd.Process.Kill()
		t.Fatalf("narfs mount not ready after 60s\n%s", m.Log())
	}
	return m
}

// stop sends SIGTERM and checks that the daemon exits cleanly and leaves
// no mount behind; the calls after the first do nothing.
func (m *mounted) stop(t testing.TB) {
	t.Helper()
	m.stopped.Do(func() { m.stopOnce(t) })
}

func (m *mounted) stopOnce(t testing.TB) {
	t.Helper()
	m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-m.exited:
		if err != nil {
			t.Errorf("narfs mount exited with %v\n%s", err, m.Log())
		}
	case <-time.After(60 * time.Second):
		m.cmd.Process.Kill()
		<-m.exited
		t.Errorf("narfs mount did not exit on SIGTERM\n%s", m.Log())
	}
	if isMounted(m.Dir) {
		t.Errorf("%s still mounted after narfs exited", m.Dir)
		exec.Command("fusermount3", "-u", "-z", m.Dir).Run()
	}
	// The last lines (the unmount summary, a race report) may still be in
	// the pipe.
	select {
	case <-m.drained:
	case <-time.After(10 * time.Second):
		t.Errorf("the daemon's log pipe stayed open after it exited")
	}
}

// isMounted reads /proc/self/mountinfo.
func isMounted(dir string) bool {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && f[4] == dir {
			return true
		}
	}
	return false
}

// bashC runs a command line in a separate process (never exec from the
// serving process), with a deadline so a hung mount fails the test.
func bashC(t testing.TB, script string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "bash", "-c", script).CombinedOutput()
	return string(out), err
}

// startProc starts a helper process that the test kills.
func startProc(t testing.TB, name string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(name, args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd
}

// waitLog waits (bounded) until the daemon's log, which arrives through a
// pipe, contains every one of want; it reports whether it did.
func (m *mounted) waitLog(want ...string) bool {
	for deadline := time.Now().Add(10 * time.Second); ; {
		log, ok := m.Log(), true
		for _, w := range want {
			ok = ok && strings.Contains(log, w)
		}
		if ok {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}
