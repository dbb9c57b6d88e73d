package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMountNixDaemonSocket: NARFS_NIX_DAEMON_SOCKET (as --nix-daemon-socket)
// makes the mount serve Nix's daemon protocol: mode 0666 with
// --allow-other, answering Nix 2.8 with the cache's metadata, and gone
// with the mount.
func TestMountNixDaemonSocket(t *testing.T) {
	b := needBuildInputs(t)
	sock := filepath.Join(t.TempDir(), "daemon.sock")
	m := startMount(t, narfsBin, "file://"+b.cache, []string{"NARFS_NIX_DAEMON_SOCKET=" + sock},
		"--cache-dir", t.TempDir(), "--trusted-public-keys", b.publicKey, "--allow-other")
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			m.stop(t)
		}
	})
	fi, err := os.Lstat(sock)
	if err != nil || fi.Mode().Perm() != 0o666 {
		t.Fatalf("socket: %v %v, want mode 0666 with --allow-other", fi, err)
	}
	out, err := sh(t.TempDir(), "nix", "path-info", "--store", "unix://"+sock, "--sigs", b.tool)
	ni := readNarinfo(t, filepath.Join(b.cache, hashOf(filepath.Base(b.tool))+".narinfo"))
	if err != nil || !strings.Contains(out, ni.Sigs[0]) {
		t.Errorf("nix path-info over the socket: %v %q; want the cache's signature", err, out)
	}
	if out, err := sh(t.TempDir(), "nix-store", "--store", "unix://"+sock, "-qR", b.tool); err != nil || strings.Fields(out)[0] != b.bb {
		t.Errorf("nix-store -qR over the socket: %v %q", err, out)
	}
	m.stop(t)
	stopped = true
	if _, err := os.Lstat(sock); err == nil {
		t.Errorf("the socket outlived the mount")
	}
}
