package remote

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Another live narfs sharing the cache dir keeps its extraction in
// progress; leftovers of dead processes go.
func TestDiskCacheKeepsLiveProcessesTemp(t *testing.T) {
	base := t.TempDir()
	tmp := filepath.Join(base, cacheLayout, "tmp")
	os.MkdirAll(tmp, 0o755)
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	live := fmt.Sprintf("%d.1", os.Getppid())
	for _, name := range []string{live, fmt.Sprintf("%d.7", dead.Process.Pid), fmt.Sprintf("evict.%d.2", dead.Process.Pid), "garbage"} {
		os.MkdirAll(filepath.Join(tmp, name, "root"), 0o755)
	}
	if _, err := openDiskCache(base, 1<<30, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(tmp)
	if len(ents) != 1 || ents[0].Name() != live {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("tmp holds %v, want only the live process's %s", names, live)
	}
}
