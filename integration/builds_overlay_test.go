package integration

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// trixieRoot holds Debian trixie's Nix 2.26 (the machines run bookworm's
// 2.8): built once by mmdebstrap, from the same Debian archive, and
// shared with remote/nixdaemon's tests. Nix runs in it chrooted, in a
// private mount namespace; the host's libraries are never touched.
const trixieRoot = "/var/cache/narfs-test/trixie-nix"

// needTrixieNix returns the trixie root, building it if needed (about 40 s
// and 230 MB the first time).
func needTrixieNix(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(filepath.Join(trixieRoot, "usr/bin/nix")); err != nil {
		if _, err := exec.LookPath("mmdebstrap"); err != nil {
			t.Skip("mmdebstrap not on PATH (make deps installs it)")
		}
		if err := os.MkdirAll(filepath.Dir(trixieRoot), 0o755); err != nil {
			t.Fatal(err)
		}
		tmp := fmt.Sprintf("%s.tmp%d", trixieRoot, os.Getpid())
		os.RemoveAll(tmp)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		if out, err := exec.CommandContext(ctx, "mmdebstrap", "--variant=minbase", "--include=nix-bin", "trixie", tmp).CombinedOutput(); err != nil {
			os.RemoveAll(tmp)
			t.Fatalf("mmdebstrap: %v\n%s", err, out)
		}
		// Another test process may have won the race: either root will do.
		if err := os.Rename(tmp, trixieRoot); err != nil {
			os.RemoveAll(tmp)
			if _, serr := os.Stat(filepath.Join(trixieRoot, "usr/bin/nix")); serr != nil {
				t.Fatal(err)
			}
		}
	}
	// The overlay's store directory is mounted at /nix/store inside the
	// root; the directory /nix is its only change to the cached root
	// (each run binds its own directory over it).
	if err := os.MkdirAll(filepath.Join(trixieRoot, "nix"), 0o755); err != nil {
		t.Fatal(err)
	}
	return trixieRoot
}

// overlay226 runs Nix 2.26 chrooted in the trixie root, with the test's
// directory X as /tmp (the narfs socket /tmp/s, the narfs mount
// /tmp/lower, the upper layer /tmp/upper and its workdir /tmp/work),
// X/nix as /nix, and, inside the chroot so that /proc/self/mounts shows
// the paths Nix's check-mount compares, overlayfs at /nix/store.
const overlay226 = `root=$1 x=$2; shift 2
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
mount --rbind "$x" "$root/tmp"
mount --bind "$x/nix" "$root/nix"
exec chroot "$root" env -i HOME=/tmp PATH=/usr/bin:/bin NIX_CONF_DIR=/tmp/conf XDG_CACHE_HOME=/tmp/cache sh -ec '
mount -t overlay overlay -o lowerdir=/tmp/lower,upperdir=/tmp/upper,workdir=/tmp/work /nix/store
exec "$@"' sh "$@"`

// localOverlayStore is the store URL: the lower store is narfs's socket,
// whose real= must be the overlay's lowerdir (check-mount compares
// them), URL-encoded inside the local-overlay URL.
func localOverlayStore(real string) string {
	return "local-overlay://?lower-store=" + url.QueryEscape("unix:///tmp/s?real="+real) + "&upper-layer=/tmp/upper"
}

// TestBuildsLocalOverlay226: Nix 2.26's local-overlay store with narfs's
// daemon socket as its lower store and the narfs mount as the overlay's
// lower layer builds without substituting, reading its inputs through
// the overlay (only the files it opens are fetched); outputs land in the
// upper layer; an input shows the cache's signatures; garbage collection
// deletes only upper-layer paths; a second build reads the local cache.
func TestBuildsLocalOverlay226(t *testing.T) {
	b := needBuildInputs(t)
	root := needTrixieNix(t)
	h := serveHTTP(t, b.cache)
	x := t.TempDir()
	for _, d := range []string{"lower", "upper", "work", "nix/store", "nix/var", "conf"} {
		if err := os.MkdirAll(filepath.Join(x, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	conf := "experimental-features = nix-command local-overlay-store\nsubstituters =\nbuild-users-group =\nsandbox = false\n"
	if err := os.WriteFile(filepath.Join(x, "conf", "nix.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	b.expr(t, x) // /tmp/build.nix in the chroot
	m := startMountAt(t, narfsBin, h.URL, filepath.Join(x, "lower"), nil,
		"--cache-dir", t.TempDir(), "--trusted-public-keys", b.publicKey, "--indexed-whole-max", "0",
		"--nix-daemon-socket", filepath.Join(x, "s"))
	t.Cleanup(func() {
		m.stop(t)
		if t.Failed() {
			t.Logf("narfs log:\n%s", m.Log())
		}
		if _, err := os.Lstat(filepath.Join(x, "s")); err == nil {
			t.Errorf("the daemon socket outlived the mount")
		}
	})
	if fi, err := os.Lstat(filepath.Join(x, "s")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("daemon socket: %v %v, want mode 0600", fi, err)
	}
	if !strings.Contains(m.Log(), "unix://"+filepath.Join(x, "s")) {
		t.Errorf("the log does not say where the daemon listens:\n%s", m.Log())
	}
	nix := func(args ...string) (string, error) {
		t.Helper()
		return inNamespace(t, nil, overlay226, append([]string{root, x}, args...)...)
	}
	store := localOverlayStore("/tmp/lower")
	mustNix := func(args ...string) string {
		t.Helper()
		out, err := nix(args...)
		if err != nil {
			t.Fatalf("%q: %v\n%s", args, err, out)
		}
		return out
	}
	if v := mustNix("nix", "--version"); !strings.Contains(v, "2.26") {
		t.Fatalf("trixie's nix is %q; update the test", v)
	}

	// check-mount: real= of the lower store must be the overlay's lowerdir.
	if out, err := nix("nix", "path-info", "--store", localOverlayStore("/tmp/elsewhere"), b.bb); err == nil || !strings.Contains(out, "mounted incorrectly") {
		t.Errorf("a lower store whose real= is not the lowerdir: %v\n%s; want check-mount's refusal", err, out)
	}

	ni := readNarinfo(t, filepath.Join(b.cache, hashOf(filepath.Base(b.input))+".narinfo"))
	if out := mustNix("nix", "path-info", "--store", store, "--sigs", b.input); !strings.Contains(out, ni.Sigs[0]) {
		t.Errorf("path-info --sigs of an input: %s; want the cache's signature %s", out, ni.Sigs[0])
	}

	out := mustNix("nix", "build", "--store", store, "--option", "substituters", "", "-f", "/tmp/build.nix", "--no-link", "--print-out-paths", "-L")
	outPath := strings.TrimSpace(out[strings.LastIndex(strings.TrimSpace(out), "\n")+1:])
	fetched, all := h.narBytes(), b.narObjectBytes(t)
	t.Logf("built %s, %d of %d NAR bytes fetched", outPath, fetched, all)
	greeting, err := os.ReadFile(filepath.Join(x, "upper", filepath.Base(outPath), "greeting"))
	if err != nil || string(greeting) != b.bb+"\nhello from the lazy store\n" {
		t.Errorf("the output in the upper layer: %q, %v", greeting, err)
	}
	for _, p := range []string{b.bb, b.tool, b.input} {
		if _, ok := upperEntries(t, filepath.Join(x, "upper"))[filepath.Base(p)]; ok {
			t.Errorf("%s was copied into the upper layer: substituted, not read through the overlay", p)
		}
	}
	if strings.Contains(out, "copying path") {
		t.Errorf("nix build substituted:\n%s", out)
	}
	if fetched > all-b.bigBytes+64<<10 {
		t.Errorf("%d NAR bytes fetched of %d: the build's unread big.bin (%d) was fetched", fetched, all, b.bigBytes)
	}

	// Garbage collection deletes the build's paths in the upper layer and
	// leaves the lower ones, without whiteouts.
	gc := mustNix("nix", "store", "gc", "--store", store)
	for name, whiteout := range upperEntries(t, filepath.Join(x, "upper")) {
		t.Errorf("after gc the upper layer holds %s (whiteout %v)\n%s", name, whiteout, gc)
	}
	mustNix("nix", "path-info", "--store", store, b.bb, b.tool, b.input)
	mustNix("/nix/store/"+filepath.Base(b.bb)+"/bin/busybox", "true")

	// The second build reads its inputs from narfs's local cache.
	mustNix("nix", "build", "--store", store, "--option", "substituters", "", "-f", "/tmp/build.nix", "--no-link")
	if h.narBytes() != fetched {
		t.Errorf("the second build fetched %d NAR bytes, want none", h.narBytes()-fetched)
	}
}
