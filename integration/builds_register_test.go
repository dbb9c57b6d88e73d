package integration

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// overlay28 is the recipe for any Nix (here Debian's 2.8): in a private
// mount namespace, overlayfs at /nix/store (lower: the narfs mount,
// upper: a local directory) and a separate state directory bound over
// /nix/var, so the host's store and database are untouched.
const overlay28 = `lower=$1 upper=$2 work=$3 var=$4; shift 4
mount -t overlay overlay -o "lowerdir=$lower,upperdir=$upper,workdir=$work" /nix/store
mount --bind "$var" /nix/var
exec "$@"`

// TestBuildsOverlayRegister28: `narfs register --closure | nix-store
// --load-db` makes Nix 2.8 see a narfs mount's paths, under an overlay at
// /nix/store, as valid: nix-build builds on them without substituting,
// fetching only the files the build reads; outputs land in the upper
// layer; the pitfalls the README documents hold as measured.
func TestBuildsOverlayRegister28(t *testing.T) {
	b := needBuildInputs(t)
	h := serveHTTP(t, b.cache)
	// Indexed paths only by chunk (never whole), so the bytes fetched
	// show what was read.
	m := mountNarfs(t, h.URL, nil, "--trusted-public-keys", b.publicKey, "--indexed-whole-max", "0")
	dir := t.TempDir()
	upper, work, state := filepath.Join(dir, "upper"), filepath.Join(dir, "work"), filepath.Join(dir, "var")
	for _, d := range []string{upper, work, state} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	nix := func(stdin []byte, args ...string) (string, error) {
		t.Helper()
		return inNamespace(t, stdin, overlay28, append([]string{m.Dir, upper, work, state}, args...)...)
	}
	mustNix := func(stdin []byte, args ...string) string {
		t.Helper()
		out, err := nix(stdin, args...)
		if err != nil {
			t.Fatalf("%q: %v\n%s", args, err, out)
		}
		return out
	}

	// The registration: the closure of tool and input, references first,
	// in nix-store --dump-db's format.
	reg, errOut, code := narfs(t, nil, "register", "--closure", "--trusted-public-keys", b.publicKey, "--cache-dir", t.TempDir(), h.URL, b.tool, b.input)
	if code != 0 {
		t.Fatalf("narfs register: exit %d\n%s", code, errOut)
	}
	dump, err := sh(dir, "nix-store", "--dump-db", b.bb)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(reg, dump+"\n") {
		t.Errorf("register's record of busybox differs from nix-store --dump-db's:\n%s\nwant:\n%s", reg, dump)
	}
	if i, j := strings.Index(reg, b.bb+"\n"), strings.Index(reg, b.tool+"\n"); i < 0 || j < 0 || i > j {
		t.Errorf("busybox (%d) must be registered before the tool that references it (%d):\n%s", i, j, reg)
	}
	if bad, _, code := narfs(t, nil, "register", "--trusted-public-keys", b.publicKey, "--cache-dir", t.TempDir(), h.URL, b.tool, "/nix/store/00000000000000000000000000000000-absent"); code != 1 || bad != "" {
		t.Errorf("register with an absent path: exit %d, printed %q; want 1 and nothing", code, bad)
	}

	mustNix([]byte(reg), "nix-store", "--load-db")
	if got := strings.Fields(mustNix(nil, "nix-store", "-qR", b.tool)); !slices.Equal(got, []string{b.bb, b.tool}) {
		t.Errorf("nix-store -qR tool = %q", got)
	}

	expr := b.expr(t, dir)
	before := h.narBytes()
	out := strings.TrimSpace(mustNix(nil, "nix-build", "--no-out-link", expr))
	outPath := out[strings.LastIndex(out, "\n")+1:]
	t.Logf("built %s, %d NAR bytes fetched", outPath, h.narBytes()-before)
	greeting, err := os.ReadFile(filepath.Join(upper, filepath.Base(outPath), "greeting"))
	if err != nil || string(greeting) != b.bb+"\nhello from the lazy store\n" {
		t.Errorf("the output in the upper layer: %q, %v", greeting, err)
	}
	ups := upperEntries(t, upper)
	for _, p := range []string{b.bb, b.tool, b.input} {
		if _, ok := ups[filepath.Base(p)]; ok {
			t.Errorf("%s was copied into the upper layer: substituted, not read through the overlay", p)
		}
	}
	if strings.Contains(out, "copying path") {
		t.Errorf("nix-build substituted:\n%s", out)
	}
	// The build opened busybox, tool's bbpath and input's greeting: not
	// input's random big.bin, which alone is more than the bound.
	if fetched, all := h.narBytes(), b.narObjectBytes(t); fetched > all-b.bigBytes+64<<10 {
		t.Errorf("%d NAR bytes fetched of %d: the build's unread big.bin (%d) was fetched", fetched, all, b.bigBytes)
	}

	// A second build (its output deleted first) reads from the local cache.
	mustNix(nil, "nix-store", "--delete", outPath)
	fetched := h.narBytes()
	mustNix(nil, "nix-build", "--no-out-link", expr)
	if h.narBytes() != fetched {
		t.Errorf("the second build fetched %d NAR bytes, want none (the local cache has them)", h.narBytes()-fetched)
	}

	// nix-store --verify keeps the registered paths the store directory
	// lists: the mount lists what was looked up (every path of a listable
	// file:// or S3 cache), so the build's lookups made them listed.
	mustNix(nil, "nix-store", "--verify")
	mustNix(nil, "nix-store", "--check-validity", b.bb, b.tool, b.input)

	// Pitfall, as measured: a fresh mount of an HTTP cache lists nothing
	// yet, and --verify drops the registered paths as "disappeared"; the
	// README's recipe stats the registered closure through the store
	// first. (With valid referrers, the output and its .drv, --verify
	// keeps them but fails: delete those first.)
	drv := strings.TrimSpace(mustNix(nil, "nix-store", "-qd", outPath))
	mustNix(nil, "nix-store", "--delete", outPath)
	mustNix(nil, "nix-store", "--delete", drv)
	fresh := mountNarfs(t, h.URL, nil, "--trusted-public-keys", b.publicKey)
	onFresh := func(args ...string) string {
		t.Helper()
		out, err := inNamespace(t, nil, overlay28, append([]string{fresh.Dir, upper, work, state}, args...)...)
		if err != nil {
			t.Fatalf("%q: %v\n%s", args, err, out)
		}
		return out
	}
	if out := onFresh("nix-store", "--verify"); !strings.Contains(out, "disappeared") {
		t.Errorf("--verify on a fresh HTTP mount: %s; want the registered paths dropped (update the README's pitfall)", out)
	}
	mustNix([]byte(reg), "nix-store", "--load-db")
	onFresh("sh", "-c", "nix-store -qR \"$@\" | xargs stat >/dev/null", "sh", b.tool, b.input)
	if out := onFresh("nix-store", "--verify"); strings.Contains(out, "disappeared") {
		t.Errorf("--verify after the recipe's stat still drops paths:\n%s", out)
	}
	onFresh("nix-store", "--check-validity", b.bb, b.tool, b.input)
	mustNix(nil, "nix-build", "--no-out-link", expr)

	// Pitfall, as measured: --verify --check-contents hashes every
	// registered path, so it fetches everything (big.bin included).
	fetched = h.narBytes()
	mustNix(nil, "nix-store", "--verify", "--check-contents")
	if got := h.narBytes() - fetched; got < b.bigBytes {
		t.Errorf("--verify --check-contents fetched %d NAR bytes, less than big.bin alone (%d): update the README's pitfall", got, b.bigBytes)
	}

	// Garbage collection with the registered paths rooted deletes only
	// the build's own paths, in the upper layer.
	roots := "mkdir -p /nix/var/nix/gcroots/narfs; for p in \"$@\"; do ln -sfn \"$p\" /nix/var/nix/gcroots/narfs/${p##*/}; done"
	mustNix(nil, append([]string{"sh", "-c", roots, "sh"}, b.tool, b.input)...)
	gc := mustNix(nil, "nix-store", "--gc")
	for name, whiteout := range upperEntries(t, upper) {
		t.Errorf("after a rooted gc the upper layer holds %s (whiteout %v)\n%s", name, whiteout, gc)
	}
	mustNix(nil, "nix-store", "--check-validity", b.bb, b.tool, b.input)

	// Pitfall, as measured: without roots, Nix 2.8 deletes the lower paths
	// through the overlay, which leaves whiteouts in the upper layer and
	// hides them.
	mustNix(nil, "rm", "-rf", "/nix/var/nix/gcroots/narfs")
	gc = mustNix(nil, "nix-store", "--gc")
	ups = upperEntries(t, upper)
	for _, p := range []string{b.bb, b.tool, b.input} {
		if !ups[filepath.Base(p)] {
			t.Errorf("after an unrooted gc, no whiteout for %s in the upper layer (%v): update the README's pitfall\n%s", p, ups, gc)
		}
	}
	if _, err := os.Stat(filepath.Join(m.Dir, filepath.Base(b.bb), "bin", "busybox")); err != nil {
		t.Errorf("the mount itself lost busybox: %v", err)
	}

	// Pitfall, as measured: nix-store --optimise hard-links every file of
	// every registered path into /nix/store/.links, which makes overlayfs
	// copy the lower files up: the whole closure is fetched and copied
	// into the upper layer. (In a state of its own: the GC above hid the
	// lower paths of this one.)
	d2 := t.TempDir()
	up2, work2, state2 := filepath.Join(d2, "upper"), filepath.Join(d2, "work"), filepath.Join(d2, "var")
	for _, d := range []string{up2, work2, state2} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := inNamespace(t, []byte(reg), overlay28, m.Dir, up2, work2, state2, "nix-store", "--load-db"); err != nil {
		t.Fatalf("--load-db: %v\n%s", err, out)
	}
	if out, err := inNamespace(t, nil, overlay28, m.Dir, up2, work2, state2, "nix-store", "--optimise"); err != nil {
		t.Fatalf("--optimise: %v\n%s", err, out)
	}
	ups = upperEntries(t, up2)
	for _, p := range []string{b.bb, b.tool, b.input} {
		if whiteout, ok := ups[filepath.Base(p)]; !ok || whiteout {
			t.Errorf("after --optimise, %s was not copied up into the upper layer (%v): update the README's pitfall", p, ups)
		}
	}
	if fi, err := os.Stat(filepath.Join(up2, filepath.Base(b.input), "share", "big.bin")); err != nil || fi.Size() != b.bigBytes {
		t.Errorf("after --optimise, big.bin in the upper layer: %v %v", fi, err)
	}
}
