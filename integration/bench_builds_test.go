package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/narfs/narfs/integration/linkshape"
)

// Measures 19–20: real builds on narfs (README, Builds on narfs) of
// derivations using the Go toolchain of the indexed workload, through
// each mode (Nix 2.26's local-overlay store over narfs's daemon socket;
// Nix 2.8 with overlayfs and narfs register), against Nix 2.8 substituting
// the toolchain from the same cache then building. Every run: a fresh
// narfs cache directory or Nix store, page caches dropped, the cache
// behind a linkshape.S3Region proxy.

// benchBuildExpr: %s are the toolchain, busybox and the hello module
// (store paths), then the command: "build" compiles and links hello
// world (empty GOCACHE), "version" runs go version. XDG_CONFIG_HOME
// is a file so that go's telemetry (which GOTELEMETRY=off in the
// environment does not turn off) finds no directory to write: its
// counter files and the upload process it leaves behind made Nix fail
// to remove the build directory ("Directory not empty").
const benchBuildExpr = `
let
  go = builtins.storePath %q;
  bb = builtins.storePath %q;
  src = builtins.storePath %q;
  cmd = %q;
  script = if cmd == "build"
    then "${bb}/bin/busybox mkdir -p $out && cd ${src} && ${go}/bin/go build -o $out/bin/hello . && $out/bin/hello"
    else "${go}/bin/go version > $out";
in derivation {
  name = "narfs-bench-go-${cmd}"; system = builtins.currentSystem;
  builder = "${bb}/bin/busybox";
  args = [ "sh" "-c" "export HOME=$TMPDIR GOCACHE=$TMPDIR/cache GOPATH=$TMPDIR/gopath GOTOOLCHAIN=local GOPROXY=off XDG_CONFIG_HOME=/dev/null CGO_ENABLED=0; ${script}" ];
}
`

// benchOverlay226 is overlay226 with the narfs mount ($3) bound at the
// test directory's lower/ first (bench mounts live elsewhere).
const benchOverlay226 = `root=$1 x=$2 mnt=$3; shift 3
mount --bind "$mnt" "$x/lower"
set -- "$root" "$x" "$@"
` + overlay226

// benchSubstitute gives Nix 2.8 an empty store and state directory in a
// private mount namespace: what it builds on, it substitutes.
const benchSubstitute = `store=$1 var=$2; shift 2
mount --bind "$store" /nix/store
mount --bind "$var" /nix/var
exec "$@"`

// builds runs measures 19 (go build) and 20 (go version).
func (b *bench) builds() {
	t := b.t
	root := needTrixieNix(t)
	w := b.idxWorkload()
	extra := b.benchBuildPaths(w)
	srv := serveCounting(t, w.Indexed)
	px, err := linkshape.Start(srv.URL, linkshape.S3Region)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { px.Close() })
	link := px.URL()
	goNar := readNarinfo(t, filepath.Join(w.Indexed, hashOf(w.Go)+".narinfo")).FileSize
	runs := b.runs // medians of 5 by default: single builds vary by ±5% on these machines
	b.buildIntro = fmt.Sprintf("Builds on narfs (README, Builds on narfs): derivations whose builder is a static busybox and whose input is the Go toolchain "+
		"of the indexed workload (its NAR object %s), with the cache behind linkshape.S3Region; each run on a fresh narfs cache directory or Nix store, "+
		"page caches dropped. overlay 2.26 = Nix 2.26's local-overlay store over narfs's daemon socket; register 2.8 = Nix 2.8 with overlayfs at "+
		"/nix/store over the mount and `narfs register --closure | nix-store --load-db` (timed with the build); reference = Nix 2.8 substituting "+
		"the same paths from the same cache into an empty store, then building. Upstream = bytes the cache sent. Medians of %d runs.\n\n", mib(goNar), runs)
	for _, cmd := range []string{"build", "version"} {
		var ov, rg, ref []time.Duration
		var ovBytes, rgBytes, refBytes, ovOps, rgOps []int64
		for range runs {
			d, by, ops := b.buildOverlay226(root, w, extra, link, srv, cmd)
			ov, ovBytes, ovOps = append(ov, d), append(ovBytes, by), append(ovOps, ops)
			d, by, ops = b.buildRegister28(w, extra, link, srv, cmd)
			rg, rgBytes, rgOps = append(rg, d), append(rgBytes, by), append(rgOps, ops)
			d, by = b.buildSubstitute(w, extra, link, srv, cmd)
			ref, refBytes = append(ref, d), append(refBytes, by)
		}
		num, what, target := "19", "`go build` of hello world (empty GOCACHE)", 1.0
		if cmd == "version" {
			num, what, target = "20", "`go version`", 0.2
		}
		refText := fmt.Sprintf("%s; upstream %s", secs(median(ref)), mib(median(refBytes)))
		for _, m := range []struct {
			mode  string
			d     []time.Duration
			by    []int64
			ops   []int64
			label string
		}{{"overlay 2.26", ov, ovBytes, ovOps, "a"}, {"register 2.8", rg, rgBytes, rgOps, "b"}} {
			r := ratio(median(m.d), median(ref))
			share := float64(median(m.by)) / float64(goNar)
			met := r <= target
			if cmd == "build" {
				met = met && share <= 0.5
			}
			targetText := fmt.Sprintf("time ≤ %.1f×", target)
			if cmd == "build" {
				targetText += ", upstream ≤ 50% of the toolchain's NAR object"
			}
			b.buildRows = append(b.buildRows, benchRow{num + m.label, fmt.Sprintf("%s, a derivation on the Go toolchain: %s vs substitute then build", what, m.mode),
				fmt.Sprintf("%s; upstream %s; %d FUSE ops", secs(median(m.d)), mib(median(m.by)), median(m.ops)), refText,
				fmt.Sprintf("time %.2f; upstream %.0f%% of the toolchain's NAR object", r, 100*share), targetText, verdict(met), ""})
		}
	}
}

// buildPaths are the store paths the build measures add to the indexed
// cache: busybox and the hello module.
type buildPaths struct{ bb, src string }

func (b *bench) benchBuildPaths(w *idxWorkload) buildPaths {
	t := b.t
	dir := b.scratch()
	defer os.RemoveAll(dir)
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Fatalf("the build measures need Debian's busybox-static (make deps): %v", err)
	}
	os.MkdirAll(filepath.Join(dir, "bb", "bin"), 0o755)
	os.MkdirAll(filepath.Join(dir, "narfs-bench-hello"), 0o755)
	busybox, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "bb", "bin", "busybox"), busybox, 0o755)
	g := newGoRun(t, dir)
	for _, f := range []string{"go.mod", "main.go"} {
		data, _ := os.ReadFile(filepath.Join(g.hello, f))
		os.WriteFile(filepath.Join(dir, "narfs-bench-hello", f), data, 0o644)
	}
	var p buildPaths
	if p.bb, err = sh(dir, "nix-store", "--add", filepath.Join(dir, "bb")); err != nil {
		t.Fatal(err)
	}
	if p.src, err = sh(dir, "nix-store", "--add", filepath.Join(dir, "narfs-bench-hello")); err != nil {
		t.Fatal(err)
	}
	args := []string{"push", "--no-closure", "--secret-key", filepath.Join(w.Dir, "sk"), "file://" + w.Indexed, p.bb, p.src}
	if out, err := exec.Command(benchBinary(t), args...).CombinedOutput(); err != nil {
		t.Fatalf("narfs push: %v\n%s", err, out)
	}
	return p
}

func (p buildPaths) expr(t *testing.T, dir string, w *idxWorkload, cmd string) string {
	f := filepath.Join(dir, "build.nix")
	if err := os.WriteFile(f, []byte(fmt.Sprintf(benchBuildExpr, "/nix/store/"+w.Go, p.bb, p.src, cmd)), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// timedNS runs a script in a private mount namespace and times it.
func timedNS(t *testing.T, script string, args ...string) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "unshare", append([]string{"--mount", "--propagation", "private", "--fork", "sh", "-ec", script, "sh"}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	if err != nil {
		t.Fatalf("%q: %v\n%s", args, err, out.String())
	}
	return d
}

// buildMount mounts the cache for one build run, with metrics to count
// FUSE operations; sock, if set, is the daemon socket.
func (b *bench) buildMount(w *idxWorkload, link, cache, sock string) (*benchDaemon, string) {
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(b.t))
	extra := []string{"--metrics-listen", addr}
	if sock != "" {
		extra = append(extra, "--nix-daemon-socket", sock)
	}
	return benchMount(b.t, link, w.PublicKey, cache, nil, true, extra...), addr
}

func fuseOps(t *testing.T, addr string) int64 {
	s, _ := scrapeMetrics(t, addr)
	return int64(sum(s, "narfs_fuse_operations_total"))
}

func (b *bench) buildOverlay226(root string, w *idxWorkload, p buildPaths, link string, srv *countingCache, cmd string) (time.Duration, int64, int64) {
	t := b.t
	x := b.scratch()
	defer os.RemoveAll(x)
	for _, d := range []string{"lower", "upper", "work", "nix/store", "nix/var", "conf"} {
		os.MkdirAll(filepath.Join(x, d), 0o755)
	}
	conf := "experimental-features = nix-command local-overlay-store\nsubstituters =\nbuild-users-group =\nsandbox = false\n"
	os.WriteFile(filepath.Join(x, "conf", "nix.conf"), []byte(conf), 0o644)
	p.expr(t, x, w, cmd)
	cache := b.scratch()
	defer os.RemoveAll(cache)
	m, addr := b.buildMount(w, link, cache, filepath.Join(x, "s"))
	dropCaches(t)
	before := srv.snapshot()
	d := timedNS(t, benchOverlay226, root, x, m.Dir, "nix", "build", "--store", localOverlayStore("/tmp/lower"), "-f", "/tmp/build.nix", "--no-link")
	by := srv.since(before).allBytes
	ops := fuseOps(t, addr)
	m.stop(t)
	return d, by, ops
}

func (b *bench) buildRegister28(w *idxWorkload, p buildPaths, link string, srv *countingCache, cmd string) (time.Duration, int64, int64) {
	t := b.t
	x := b.scratch()
	defer os.RemoveAll(x)
	for _, d := range []string{"upper", "work", "var"} {
		os.MkdirAll(filepath.Join(x, d), 0o755)
	}
	expr := p.expr(t, x, w, cmd)
	cache := b.scratch()
	defer os.RemoveAll(cache)
	m, addr := b.buildMount(w, link, cache, "")
	dropCaches(t)
	before := srv.snapshot()
	// The mount's cache dir, as in the README's recipe (both commands'
	// default): the narinfos register records, the mount finds there.
	reg := fmt.Sprintf("'%s' register --closure --trusted-public-keys '%s' --cache-dir '%s' '%s' /nix/store/%s %s %s | nix-store --load-db",
		benchBinary(t), w.PublicKey, cache, link, w.Go, p.bb, p.src)
	d := timedNS(t, overlay28, m.Dir, filepath.Join(x, "upper"), filepath.Join(x, "work"), filepath.Join(x, "var"),
		"sh", "-ec", reg+"; nix-build --no-out-link '"+expr+"' >/dev/null")
	by := srv.since(before).allBytes
	ops := fuseOps(t, addr)
	m.stop(t)
	return d, by, ops
}

func (b *bench) buildSubstitute(w *idxWorkload, p buildPaths, link string, srv *countingCache, cmd string) (time.Duration, int64) {
	t := b.t
	x := b.scratch()
	defer os.RemoveAll(x)
	for _, d := range []string{"store", "var"} {
		os.MkdirAll(filepath.Join(x, d), 0o755)
	}
	expr := p.expr(t, x, w, cmd)
	dropCaches(t)
	before := srv.snapshot()
	d := timedNS(t, benchSubstitute, filepath.Join(x, "store"), filepath.Join(x, "var"),
		"nix-build", "--no-out-link", "--option", "substituters", link, "--option", "trusted-public-keys", w.PublicKey, expr)
	return d, srv.since(before).allBytes
}
