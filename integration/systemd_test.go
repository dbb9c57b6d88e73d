package integration

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// narfs mount speaks sd_notify: READY=1 once the mount answers,
// STOPPING=1 on SIGTERM, then a clean unmount.
func TestSystemdNotify(t *testing.T) {
	requireE2E(t)
	c := nixClosure(t)
	sock := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	type msg struct {
		state   string
		statErr error // stat of a store path when the message arrived
	}
	dir := t.TempDir()
	app := filepath.Join(dir, c.app)
	msgs := make(chan msg, 8)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(msgs)
				return
			}
			m := msg{state: string(buf[:n])}
			if strings.Contains(m.state, "READY=1") {
				_, m.statErr = os.Stat(app)
			}
			msgs <- m
		}
	}()
	m := startMountAt(t, narfsBin, "file://"+c.caches["zstd"], dir, []string{"NOTIFY_SOCKET=" + sock},
		"--cache-dir", t.TempDir(), "--trusted-public-keys", c.publicKey)
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			m.stop(t)
		}
		if t.Failed() {
			t.Logf("narfs log:\n%s", m.Log())
		}
	})
	next := func() msg {
		t.Helper()
		select {
		case x, ok := <-msgs:
			if !ok {
				t.Fatal("notify socket closed")
			}
			return x
		case <-time.After(20 * time.Second):
			t.Fatal("no notification within 20s")
		}
		return msg{}
	}
	ready := next()
	if ready.state != "READY=1" {
		t.Fatalf("first notification %q, want READY=1", ready.state)
	}
	if ready.statErr != nil {
		t.Errorf("stat of a store path when READY=1 arrived: %v", ready.statErr)
	}
	if !isMounted(dir) {
		t.Errorf("READY=1 but %s is not mounted", dir)
	}

	m.cmd.Process.Signal(syscall.SIGTERM)
	if s := next(); s.state != "STOPPING=1" {
		t.Errorf("notification after SIGTERM %q, want STOPPING=1", s.state)
	}
	stopped = true
	m.stop(t) // checks the exit status and that the mount is gone
}

// The unit installs where asked and is what the binary carries.
func TestInstallUnit(t *testing.T) {
	requireE2E(t)
	dir := t.TempDir()
	// As in the README, with the directory from the environment.
	cmd := "NARFS_UNIT_DIR=" + dir + " " + narfsBin + " install-unit"
	out, err := bashC(t, cmd)
	if err != nil {
		t.Fatalf("%s: %v\n%s", cmd, err, out)
	}
	unit, err := os.ReadFile(filepath.Join(dir, "narfs@.service"))
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile("../cmd/narfs/narfs.service")
	if err != nil {
		t.Fatal(err)
	}
	if string(unit) != string(src) {
		t.Error("installed unit differs from cmd/narfs/narfs.service")
	}
	for _, want := range []string{"Type=notify", "KillMode=mixed", "TimeoutStopSec=", "ExecStart=/usr/local/bin/narfs mount"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("unit lacks %s", want)
		}
	}
}
