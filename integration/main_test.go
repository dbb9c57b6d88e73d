package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// narfsBin is the narfs binary under test, built once by TestMain.
var narfsBin string

// skipReason is set when the machine cannot run end-to-end tests.
var skipReason string

// nixConfig keeps real Nix away from the host's configuration and daemon.
const nixConfig = "experimental-features = nix-command\nbuild-users-group =\nsandbox = false\nsubstituters =\n"

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	os.Setenv("NIX_CONFIG", nixConfig)
	switch {
	case os.Geteuid() != 0:
		skipReason = "end-to-end tests need root (FUSE mounts, /nix/store)"
	case !exists("/dev/fuse"):
		skipReason = "no /dev/fuse"
	case !onPath("nix-store") || !onPath("fusermount3"):
		skipReason = "nix-bin and fuse3 are not installed (make deps)"
	}
	if skipReason != "" {
		if os.Getenv("CI") != "" {
			fmt.Fprintln(os.Stderr, "integration: cannot run in CI:", skipReason)
			return 1
		}
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "narfs-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	narfsBin = filepath.Join(dir, "narfs")
	build := exec.Command("go", "build", "-race", "-o", narfsBin, "github.com/narfs/narfs/cmd/narfs")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building narfs:", err)
		return 1
	}
	code := m.Run()
	cleanupFixtures()
	return code
}

func requireE2E(t testing.TB) {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func onPath(cmd string) bool {
	_, err := exec.LookPath(cmd)
	return err == nil
}
