package integration

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// narfs runs the CLI and returns stdout, stderr and the exit code.
func narfs(t testing.TB, env []string, args ...string) (string, string, int) {
	t.Helper()
	requireE2E(t)
	cmd := exec.Command(narfsBin, args...)
	cmd.Env = append(cmd.Environ(), env...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

func TestCLIInspect(t *testing.T) {
	c := nixClosure(t)
	h := serveHTTP(t, c.caches["xz"])
	key := "--trusted-public-keys=" + c.publicKey
	cacheDir := "--cache-dir=" + t.TempDir()
	lib := c.iaPaths[2]

	out, errOut, code := narfs(t, nil, "ls", "-lR", key, cacheDir, h.URL, "/nix/store/"+lib)
	if code != 0 {
		t.Fatalf("ls: exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		"-r--r--r--                   18 /nix/store/" + lib + "/share/doc/README",
		"lrwxrwxrwx                    0 /nix/store/" + lib + "/lib/libfake.so -> libfake.so.1",
		"dr-xr-xr-x                    0 /nix/store/" + lib + "/share",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("ls -lR output lacks %q:\n%s", want, out)
		}
	}
	if n := h.narGets(); n != 0 {
		t.Errorf("ls with a .ls fetched %d NARs", n)
	}
	out, _, code = narfs(t, nil, "ls", key, cacheDir, h.URL, lib+"/share")
	if code != 0 || out != "doc\nempty\n" {
		t.Errorf("ls of a sub-directory: exit %d, %q", code, out)
	}

	out, errOut, code = narfs(t, nil, "cat", key, cacheDir, h.URL, lib+"/share/doc/README")
	if code != 0 || out != "narfs integration\n" {
		t.Errorf("cat: exit %d, %q, %s", code, out, errOut)
	}

	out, errOut, code = narfs(t, nil, "info", "--json", key, cacheDir, h.URL, hashOf(c.app))
	if code != 0 {
		t.Fatalf("info: exit %d: %s", code, errOut)
	}
	var info struct {
		Path       string   `json:"path"`
		NarHash    string   `json:"narHash"`
		References []string `json:"references"`
		Trust      string   `json:"trust"`
	}
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("info --json: %v\n%s", err, out)
	}
	if info.Path != "/nix/store/"+c.app || !strings.HasPrefix(info.NarHash, "sha256:") ||
		info.Trust != "signature by narfs-it-1" || len(info.References) != 1 || filepath.Base(info.References[0]) != lib {
		t.Errorf("info --json = %+v", info)
	}
	out, _, _ = narfs(t, nil, "info", key, cacheDir, "file://"+c.caches["unsigned"], c.caPaths[0])
	if !strings.Contains(out, "Trusted:     content-addressed (fixed:r:sha256:") {
		t.Errorf("info of an unsigned CA path:\n%s", out)
	}
}

// TestCLIErrors: every error a user can cause is one clear line and a
// non-zero exit.
func TestCLIErrors(t *testing.T) {
	c := nixClosure(t)
	cache := "file://" + c.caches["zstd"]
	key := "--trusted-public-keys=" + c.publicKey
	cd := "--cache-dir=" + t.TempDir()
	busy := mountNarfs(t, cache, nil, key)
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"unknown scheme", []string{"ls", cd, "ftp://example.org", c.app}, "ftp"},
		{"unknown parameter", []string{"ls", cd, "s3://bucket?regoin=eu-west-1", c.app}, "regoin"},
		{"missing cache dir", []string{"ls", cd, "file:///nonexistent/narfs-cache", c.app}, "/nonexistent/narfs-cache"},
		{"unreachable cache", []string{"ls", cd, "--timeout=2s", "http://127.0.0.1:1", c.app}, "127.0.0.1:1"},
		{"missing path", []string{"ls", cd, key, cache, "00000000000000000000000000000000-missing"}, "not found"},
		{"untrusted path", []string{"cat", cd, "--trusted-public-keys=" + c.otherKey, cache, c.app + "/bin/app"}, "untrusted"},
		{"bad key", []string{"ls", cd, "--trusted-public-keys=garbage", cache, c.app}, "trusted-public-keys"},
		{"missing mountpoint", []string{"mount", cd, key, cache, "/nonexistent/mnt"}, "does not exist"},
		{"busy mountpoint", []string{"mount", cd, key, cache, busy.Dir}, "busy"},
		{"cat a directory", []string{"cat", cd, key, cache, c.app + "/bin"}, "not a regular file"},
		{"wrong arguments", []string{"mount", cache}, "want [STORE-URL…] MOUNTPOINT"},
		{"URL after the path", []string{"ls", cd, key, c.app, cache}, "give the store URLs first"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := narfs(t, []string{"NIX_CONF_DIR=" + t.TempDir()}, tc.args...)
			if code == 0 {
				t.Fatalf("exit 0, want failure; stdout %q", out)
			}
			lines := strings.Split(strings.TrimSpace(errOut), "\n")
			last := lines[len(lines)-1]
			if !strings.HasPrefix(last, "narfs: ") || !strings.Contains(strings.ToLower(last), strings.ToLower(tc.want)) {
				t.Errorf("stderr %q: want one 'narfs: …' line mentioning %q", errOut, tc.want)
			}
			if strings.Contains(errOut, "panic") || strings.Contains(errOut, "goroutine ") {
				t.Errorf("stderr has a panic: %s", errOut)
			}
		})
	}
}
