package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// buildInputs is a small world to build in, pushed by narfs push to an
// indexed file:// cache: Debian's static busybox as the builder (bb), a
// path referencing it (tool: what --closure must follow), and an input
// tree with a small file the build reads and a 3 MB random file it does
// not (input), so the bytes fetched tell whether the build read only
// what it opened.
type buildInputs struct {
	dir       string // scratch directory (keys, sources)
	cache     string // the pushed cache
	publicKey string
	bb        string // absolute store paths
	tool      string
	input     string
	// bigBytes is the size of input's big.bin, which no build reads.
	bigBytes int64
}

// buildExpr is a derivation that reads only tool's path file and input's
// greeting, with busybox from the store as its builder.
const buildExpr = `
let
  tool = builtins.storePath %q;
  input = builtins.storePath %q;
  bb = builtins.storePath %q;
in derivation {
  name = "narfs-build-out"; system = builtins.currentSystem;
  builder = "${bb}/bin/busybox";
  args = [ "sh" "-c" "${bb}/bin/busybox mkdir $out && ${bb}/bin/busybox cat ${tool}/bbpath ${input}/share/greeting > $out/greeting && ${bb}/bin/busybox ls ${input}/share > $out/listing" ];
}
`

// toolNix makes the path that references busybox, built by the host's Nix.
const toolNix = `
derivation {
  name = "narfs-build-tool"; system = builtins.currentSystem; builder = "/bin/sh"; PATH = "/bin:/usr/bin";
  bb = builtins.storePath %q;
  args = [ "-c" "mkdir $out; echo $bb > $out/bbpath" ];
}
`

// needBuildInputs makes the inputs and their cache (a few seconds).
func needBuildInputs(t *testing.T) *buildInputs {
	t.Helper()
	requireE2E(t)
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("no /bin/busybox (make deps installs busybox-static)")
	}
	if out, err := exec.Command("ldd", "/bin/busybox").CombinedOutput(); err == nil && !strings.Contains(string(out), "not a dynamic") {
		t.Skipf("/bin/busybox is not static (install busybox-static): %s", out)
	}
	dir := t.TempDir()
	b := &buildInputs{dir: dir, cache: filepath.Join(dir, "cache"), bigBytes: 3 << 20}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "bb", "bin"), 0o755))
	busybox, err := os.ReadFile("/bin/busybox")
	must(err)
	must(os.WriteFile(filepath.Join(dir, "bb", "bin", "busybox"), busybox, 0o755))
	// Each run makes a new input path: its random file makes its hash.
	must(os.MkdirAll(filepath.Join(dir, "narfs-build-input", "share"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "narfs-build-input", "share", "greeting"), []byte("hello from the lazy store\n"), 0o644))
	big := make([]byte, b.bigBytes)
	rand.Read(big)
	must(os.WriteFile(filepath.Join(dir, "narfs-build-input", "share", "big.bin"), big, 0o644))
	if b.bb, err = sh(dir, "nix-store", "--add", filepath.Join(dir, "bb")); err != nil {
		t.Fatal(err)
	}
	if b.input, err = sh(dir, "nix-store", "--add", filepath.Join(dir, "narfs-build-input")); err != nil {
		t.Fatal(err)
	}
	must(os.WriteFile(filepath.Join(dir, "tool.nix"), []byte(fmt.Sprintf(toolNix, b.bb)), 0o644))
	if b.tool, err = sh(dir, "nix-build", "--no-out-link", "tool.nix"); err != nil {
		t.Fatal(err)
	}
	if _, err := sh(dir, "nix-store", "--generate-binary-cache-key", "narfs-builds-1", "sk", "pk"); err != nil {
		t.Fatal(err)
	}
	pk, err := os.ReadFile(filepath.Join(dir, "pk"))
	must(err)
	b.publicKey = strings.TrimSpace(string(pk))
	must(os.MkdirAll(b.cache, 0o755))
	out, errOut, code := narfs(t, nil, "push", "--secret-key", filepath.Join(dir, "sk"), "file://"+b.cache, b.tool, b.input)
	if code != 0 || strings.Count(out, "pushed ") != 3 {
		t.Fatalf("narfs push: exit %d, want 3 paths pushed\n%s%s", code, out, errOut)
	}
	return b
}

// expr writes the build's expression into dir and returns its path.
func (b *buildInputs) expr(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "build.nix")
	if err := os.WriteFile(p, []byte(fmt.Sprintf(buildExpr, b.tool, b.input, b.bb)), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// narObjectBytes is the size of the cache's NAR objects (every file's
// data, compressed).
func (b *buildInputs) narObjectBytes(t *testing.T) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(filepath.Join(b.cache, "nar"), func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		n += fi.Size()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// upperEntries lists an overlay's upper layer: store path name → whether
// it is a whiteout (a 0/0 character device, what overlayfs leaves for a
// lower file deleted through it).
func upperEntries(t *testing.T, upper string) map[string]bool {
	t.Helper()
	ents, err := os.ReadDir(upper)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]bool{}
	for _, e := range ents {
		if e.Name() == ".links" {
			continue
		}
		m[e.Name()] = e.Type()&fs.ModeCharDevice != 0
	}
	return m
}

// inNamespace runs a shell script in a private mount namespace (its
// mounts end with it), with a deadline; stdin may be nil.
func inNamespace(t *testing.T, stdin []byte, script string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "unshare", append([]string{"--mount", "--propagation", "private", "--fork", "sh", "-ec", script, "sh"}, args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}
