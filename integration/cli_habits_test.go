package integration

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestCLIHabits: --version, flags from NARFS_* variables (the command
// line winning), --log-format=json, and exit status 2 for usage errors.
func TestCLIHabits(t *testing.T) {
	c := nixClosure(t)
	out, _, code := narfs(t, nil, "--version")
	if code != 0 || !strings.HasPrefix(out, "narfs version ") {
		t.Errorf("--version: exit %d, %q", code, out)
	}
	lib := c.iaPaths[2]
	url := "file://" + c.caches["zstd"]
	env := []string{"NARFS_TRUSTED_PUBLIC_KEYS=" + c.publicKey, "NARFS_CACHE_DIR=" + t.TempDir()}
	out, errOut, code := narfs(t, env, "cat", url, lib+"/share/doc/README")
	if code != 0 || out != "narfs integration\n" {
		t.Errorf("cat with keys from NARFS_TRUSTED_PUBLIC_KEYS: exit %d, %q, %s", code, out, errOut)
	}
	// The command line wins over the environment: a key that signed
	// nothing hides the path.
	_, _, code = narfs(t, env, "cat", "--trusted-public-keys="+c.otherKey, url, lib+"/share/doc/README")
	if code != 1 {
		t.Errorf("cat with an untrusted key on the command line: exit %d, want 1", code)
	}
	// JSON logs: every stderr line is an object.
	_, errOut, _ = narfs(t, append(env, "NARFS_LOG_FORMAT=json"), "cat", "--trusted-public-keys="+c.otherKey, url, lib+"/share/doc/README")
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(errOut), "\n") {
		if !strings.HasPrefix(l, "narfs: ") { // the final error, for humans
			lines = append(lines, l)
		}
	}
	if len(lines) == 0 {
		t.Fatalf("no log lines for a hidden path: %q", errOut)
	}
	for _, l := range lines {
		var v map[string]any
		if err := json.Unmarshal([]byte(l), &v); err != nil || v["msg"] == nil {
			t.Errorf("log line is not a JSON object: %q", l)
		}
	}
	// Usage errors are exit status 2; failures 1.
	for _, args := range [][]string{{"mount"}, {"cat", "--no-such-flag", url, lib}, {"ls"}, {"--log-format=xml", "cat", url, lib + "/x"}} {
		if _, errOut, code := narfs(t, env, args...); code != 2 {
			t.Errorf("narfs %v: exit %d, want 2 (%s)", args, code, errOut)
		}
	}
	if _, _, code := narfs(t, env, "cat", url, "00000000000000000000000000000000-missing/x"); code != 1 {
		t.Errorf("cat of a missing path: exit %d, want 1", code)
	}
	if _, _, code := narfs(t, []string{"NARFS_CACHE_SIZE=lots"}, "ls", url, lib); code != 2 {
		t.Errorf("a bad NARFS_CACHE_SIZE: exit %d, want 2", code)
	}
}
