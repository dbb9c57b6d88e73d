package nixdaemon

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// Nix 2.26 (protocol 1.38, with the feature exchange) comes from Debian
// trixie, while the machines run bookworm (2.8). The test builds a trixie
// root holding nix-bin with mmdebstrap (Debian's own tool, from the same
// Debian archive) once, caches it in trixieRoot (about 40 s and 230 MB the
// first time, nothing after), and runs Nix in it chrooted, in a private
// mount namespace with /proc, /dev and the socket's directory (as /tmp)
// bound in; the host's libraries are never touched.
const trixieRoot = "/var/cache/narfs-test/trixie-nix"

// needTrixieNix returns the trixie root, building it if needed; it skips
// when that cannot work here (not root, no mmdebstrap, no unshare).
func needTrixieNix(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(filepath.Join(trixieRoot, "usr/bin/nix")); err == nil {
		return trixieRoot
	}
	if os.Getuid() != 0 {
		t.Skip("building the trixie root needs root")
	}
	for _, tool := range []string{"mmdebstrap", "unshare", "chroot"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not on PATH (Debian: apt-get install mmdebstrap)", tool)
		}
	}
	if err := os.MkdirAll(filepath.Dir(trixieRoot), 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := fmt.Sprintf("%s.tmp%d", trixieRoot, os.Getpid())
	os.RemoveAll(tmp)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	out, err := exec.CommandContext(ctx, "mmdebstrap", "--variant=minbase", "--include=nix-bin", "trixie", tmp).CombinedOutput()
	if err != nil {
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
	t.Logf("built %s in %v", trixieRoot, time.Since(start).Round(time.Second))
	return trixieRoot
}

// nix226 runs a command of trixie's Nix with the socket's directory as
// its /tmp (the socket is /tmp/s, HOME is /tmp), in a mount namespace
// that ends with it.
func nix226(t *testing.T, root, sock string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	dir := filepath.Dir(sock)
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	script := fmt.Sprintf(`set -e
mount -t proc proc %[1]s/proc
mount --rbind /dev %[1]s/dev
mount --bind %[2]s %[1]s/tmp
exec chroot %[1]s env -i HOME=/tmp PATH=/tmp/bin:/usr/bin:/bin NIX_CONF_DIR=/tmp/conf XDG_CACHE_HOME=/tmp/cache %[3]s`,
		root, dir, strings.Join(quoted, " "))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "unshare", "--mount", "--propagation", "private", "--fork", "sh", "-c", script)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	t.Logf("(2.26) %s: %v\n%s", strings.Join(args, " "), err, e.String())
	return o.String(), e.String(), err
}

// setup226 writes the chroot's nix.conf and the ssh relay (a copy of the
// test binary, which trixie's glibc runs) into the socket's directory.
func setup226(t *testing.T, sock string) {
	t.Helper()
	dir := filepath.Dir(sock)
	for _, d := range []string{"conf", "bin"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "conf", "nix.conf"), []byte("experimental-features = nix-command\nsubstituters =\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(filepath.Join(dir, "bin", "relay"), os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	ssh := "#!/bin/sh\nexec env " + dialEnv + "=/tmp/s /tmp/bin/relay\n"
	if err := os.WriteFile(filepath.Join(dir, "bin", "ssh"), []byte(ssh), 0o755); err != nil {
		t.Fatal(err)
	}
}

// TestNix226: trixie's Nix 2.26 negotiates 1.38 (features exchanged) and
// queries, reads NARs and is refused writes like 2.8.
func TestNix226(t *testing.T) {
	root := needTrixieNix(t)
	sock := startCore(t, "cache-xz")
	if filepath.Base(sock) != "s" {
		t.Fatalf("socket %s: the chroot expects /tmp/s", sock)
	}
	setup226(t, sock)
	run := func(args ...string) string {
		t.Helper()
		out, _, err := nix226(t, root, sock, args...)
		if err != nil {
			t.Fatalf("%q: %v", args, err)
		}
		return out
	}
	if v := run("nix", "--version"); !strings.Contains(v, "2.26") {
		t.Fatalf("trixie's nix is %q; update the test's expectations", v)
	}
	store := "unix:///tmp/s"

	info := run("nix", "store", "info", "--store", store, "--json")
	var si struct {
		Version string `json:"version"`
		Trusted *int   `json:"trusted"`
	}
	if err := json.Unmarshal([]byte(info), &si); err != nil {
		t.Fatalf("store info: %v: %s", err, info)
	}
	if si.Version != "narfs" || si.Trusted == nil || *si.Trusted != 0 {
		t.Errorf("store info %s: want version narfs, trusted 0 (the 1.35+ fields of the handshake)", info)
	}
	if got := lines(run("nix-store", "--store", store, "-qR", pathApp)); !slices.Equal(got, []string{pathLib, pathApp}) {
		t.Errorf("-qR = %q", got)
	}
	run("nix-store", "--store", store, "--check-validity", pathApp, pathTree)
	if _, stderr, err := nix226(t, root, sock, "nix-store", "--store", store, "--check-validity", pathNone); err == nil || !strings.Contains(stderr, "is not valid") {
		t.Errorf("--check-validity of an absent path: %v %q", err, stderr)
	}
	out := run("nix", "path-info", "--store", store, "--json", "--sigs", pathApp)
	ni := fixtureNarinfo(t, "cache-xz", pathApp)
	if !strings.Contains(out, ni.Sigs[0]) || !strings.Contains(out, ni.NarHash.SRI()) {
		t.Errorf("path-info %s lacks the signature or NarHash", out)
	}
	want, err := os.ReadFile(filepath.Join(fixtureDir, "cache-none", "nar", strings.TrimPrefix(fixtureNarinfo(t, "cache-xz", pathTree).NarHash.String(), "sha256:")+".nar"))
	if err != nil {
		t.Fatal(err)
	}
	if got := run("nix", "store", "dump-path", "--store", "ssh-ng://narfs-test", pathTree); got != string(want) {
		t.Errorf("dump-path over ssh-ng: %d bytes differ from the NAR (%d)", len(got), len(want))
	}
	if err := os.WriteFile(filepath.Join(filepath.Dir(sock), "hello"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr, err := nix226(t, root, sock, "nix-store", "--store", store, "--add", "/tmp/hello")
	if err == nil || !strings.Contains(stderr, "read-only") {
		t.Errorf("--add: %v %q; want the read-only refusal", err, stderr)
	}
}
