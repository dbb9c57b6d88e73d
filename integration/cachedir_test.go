package integration

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// narfs refuses a --cache-dir another user owns before it serves or
// fetches anything: prefetch and mount exit with an error that names the
// directory and the fix.
func TestCLIRefusesCacheDirOfAnotherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give the cache dir to another user")
	}
	c := nixClosure(t)
	h := serveHTTP(t, c.caches["xz"])
	cacheDir := t.TempDir()
	if err := os.Chown(cacheDir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	want := []string{"refusing the local cache: " + cacheDir + " is owned by uid 65534", "chown -R 0 " + cacheDir}

	_, errOut, code := narfs(t, nil, "prefetch", "--trusted-public-keys", c.publicKey, "--cache-dir", cacheDir, h.URL, "/nix/store/"+c.root)
	if code == 0 {
		t.Error("narfs prefetch into a cache dir of another user exited 0")
	}
	for _, w := range want {
		if !strings.Contains(errOut, w) {
			t.Errorf("narfs prefetch: stderr lacks %q:\n%s", w, errOut)
		}
	}

	// A mount that wrongly starts is stopped by the deadline and unmounted.
	mnt := t.TempDir()
	t.Cleanup(func() { syscall.Unmount(mnt, syscall.MNT_DETACH) })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, narfsBin, "mount", "--trusted-public-keys", c.publicKey, "--cache-dir", cacheDir, h.URL, mnt).CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("narfs mount with a cache dir of another user mounted:\n%s", out)
	}
	if err == nil {
		t.Error("narfs mount with a cache dir of another user exited 0")
	}
	for _, w := range want {
		if !strings.Contains(string(out), w) {
			t.Errorf("narfs mount: output lacks %q:\n%s", w, out)
		}
	}
	if ents, _ := os.ReadDir(cacheDir); len(ents) != 0 {
		t.Errorf("narfs wrote into the refused cache dir: %v", ents)
	}
}
