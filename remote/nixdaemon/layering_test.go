package nixdaemon

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLayering: the daemon is a front end over the core, beside the
// mount: it never imports go-fuse or package fs.
func TestLayering(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	for dep := range strings.Lines(string(out)) {
		dep = strings.TrimSpace(dep)
		if strings.HasPrefix(dep, "github.com/hanwen/go-fuse") || dep == "github.com/narfs/narfs/fs" || strings.HasPrefix(dep, "github.com/narfs/narfs/fs/") {
			t.Errorf("nixdaemon depends on %s", dep)
		}
	}
}
