package nixdaemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/narfs/narfs/remote"
	"github.com/narfs/narfs/remote/narinfo"
)

// The real-Nix tests run Debian's Nix (2.8 on bookworm) against a server
// over real caches made by Nix (nar/testdata/nix, signed by
// nar/testdata/keys/narfs-test-1).
const fixtureDir = "../../nar/testdata/nix"

const (
	pathApp  = "/nix/store/ymydngcp0syr2bpvigprvim861rmkrvc-narfs-test-app"   // input-addressed, refs lib
	pathLib  = "/nix/store/jq3hgqjn0hn0wmnld235n75qdiv5y6yk-narfs-test-lib"   // input-addressed
	pathTree = "/nix/store/14lgl3x038jkwcgv2y8x0wia7gsicsj9-tree-small"       // content-addressed
	pathLink = "/nix/store/hp418g34hrxnlc761m7yq8ms477ziv0d-single-link"      // a symlink
	pathFile = "/nix/store/zjapjaaaac5rxx8jbax88asf2gd8fnpw-single-file"      // a regular file
	pathNone = "/nix/store/00000000000000000000000000000000-not-in-the-cache" // valid name, absent
)

// dialEnv makes the test binary a stdio-to-socket relay (see TestMain):
// Nix's ssh-ng:// store runs `ssh HOST nix-daemon --stdio`, and a fake ssh
// on PATH runs this binary instead, which is how a real Nix client sends
// NarFromPath (its unix:// store reads NARs from the local file system).
const dialEnv = "NARFS_NIXDAEMON_TEST_DIAL"

func TestMain(m *testing.M) {
	if sock := os.Getenv(dialEnv); sock != "" {
		os.Exit(relay(sock))
	}
	os.Exit(m.Run())
}

func relay(sock string) int {
	c, err := net.Dial("unix", sock)
	if err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		return 1
	}
	go func() {
		io.Copy(c, os.Stdin)
		c.(*net.UnixConn).CloseWrite()
	}()
	io.Copy(os.Stdout, c)
	return 0
}

func needNix(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("nix-store"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("nix-store not on PATH in CI")
		}
		t.Skip("nix-store not on PATH (Debian: apt-get install nix-bin)")
	}
}

func fixtureKeys(t testing.TB) []narinfo.PublicKey {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(fixtureDir, "public-key.txt"))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := narinfo.ParsePublicKeys(string(data))
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// testLogger logs to the test, so a failure shows the server's side.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// startCore serves the fixture cache named cache through the core on a
// Unix socket and returns the socket's path.
func startCore(t *testing.T, cache string) string {
	t.Helper()
	keys := fixtureKeys(t)
	cfg := remote.Config{TrustedKeys: keys, RequireSigs: true, CacheDir: t.TempDir(), Logger: testLogger(t), Timeout: 30 * time.Second}
	abs, err := filepath.Abs(filepath.Join(fixtureDir, cache))
	if err != nil {
		t.Fatal(err)
	}
	core, err := remote.Open(context.Background(), []string{"file://" + abs}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { core.Close() })
	return startServer(t, &Server{Store: NewCore(core, keys), Log: testLogger(t)})
}

// startServer runs srv on a Unix socket in a temporary directory until
// the test ends.
func startServer(t testing.TB, srv *Server) string {
	t.Helper()
	// Unix socket paths are short (108 bytes): t.TempDir() may be too long.
	dir, err := os.MkdirTemp("", "nixd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "s")
	ln, err := ListenUnix(sock, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return sock
}

// nixEnv isolates Nix from the host's configuration, state and caches,
// and puts the fake ssh (relaying to sock) first on PATH.
func nixEnv(t *testing.T, sock string) []string {
	t.Helper()
	home := t.TempDir()
	conf := filepath.Join(home, "conf")
	bin := filepath.Join(home, "bin")
	for _, d := range []string{conf, bin} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(conf, "nix.conf"), []byte("experimental-features = nix-command\nsubstituters =\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ssh := "#!/bin/sh\nexec env " + dialEnv + "=" + sock + " " + self + "\n"
	if err := os.WriteFile(filepath.Join(bin, "ssh"), []byte(ssh), 0o755); err != nil {
		t.Fatal(err)
	}
	return append(os.Environ(),
		"HOME="+home, "XDG_CACHE_HOME="+filepath.Join(home, "cache"),
		"XDG_CONFIG_HOME="+filepath.Join(home, "config"), "NIX_CONF_DIR="+conf,
		"NIX_REMOTE=", "PATH="+bin+":"+os.Getenv("PATH"))
}

// nix runs a Nix command (with a one-minute bound) and returns its
// standard output; err holds the exit status, stderr its standard error.
func nix(t *testing.T, env []string, name string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	t.Logf("%s %s: %v\n%s", name, strings.Join(args, " "), err, e.String())
	return o.String(), e.String(), err
}

func mustNix(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	out, _, err := nix(t, env, name, args...)
	if err != nil {
		t.Fatalf("%s %v: %v", name, args, err)
	}
	return out
}

func lines(s string) []string {
	var out []string
	for l := range strings.Lines(s) {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	slices.Sort(out)
	return out
}

// fixtureNarinfo reads a narinfo of the fixture cache.
func fixtureNarinfo(t *testing.T, cache, p string) *narinfo.NarInfo {
	t.Helper()
	hash := strings.TrimPrefix(p, "/nix/store/")[:32]
	data, err := os.ReadFile(filepath.Join(fixtureDir, cache, hash+".narinfo"))
	if err != nil {
		t.Fatal(err)
	}
	ni, err := narinfo.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	return ni
}

func TestNixQueries(t *testing.T) {
	needNix(t)
	sock := startCore(t, "cache-xz")
	env := nixEnv(t, sock)
	store := "unix://" + sock

	got := lines(mustNix(t, env, "nix-store", "--store", store, "-q", "--references", pathApp))
	if want := []string{pathLib}; !slices.Equal(got, want) {
		t.Errorf("--references %s = %q, want %q", pathApp, got, want)
	}
	got = lines(mustNix(t, env, "nix-store", "--store", store, "-q", "--deriver", pathApp))
	if want := []string{"/nix/store/fzip1gdhg03vbfswdgn7lfaw7dmfa7an-narfs-test-app.drv"}; !slices.Equal(got, want) {
		t.Errorf("--deriver = %q, want %q", got, want)
	}
	got = lines(mustNix(t, env, "nix-store", "--store", store, "-q", "--hash", pathApp))
	if want := []string{fixtureNarinfo(t, "cache-xz", pathApp).NarHash.String()}; !slices.Equal(got, want) {
		t.Errorf("--hash = %q, want %q", got, want)
	}
	// The closure walks references through QueryPathInfo.
	got = lines(mustNix(t, env, "nix-store", "--store", store, "-qR", pathApp))
	if want := []string{pathLib, pathApp}; !slices.Equal(got, lines(strings.Join(want, "\n"))) {
		t.Errorf("-qR = %q, want %q", got, want)
	}
	// QueryMissing: a valid path needs nothing, an absent one is unknown.
	_, stderr, err := nix(t, env, "nix-store", "--store", store, "-r", "--dry-run", pathApp, pathNone)
	if err != nil || !strings.Contains(stderr, "don't know how to build these paths:\n  "+pathNone) || strings.Contains(stderr, pathApp) {
		t.Errorf("-r --dry-run: %v %q; want only %s unknown", err, stderr, pathNone)
	}
	// Building valid paths is a no-op (BuildPathsWithResults: AlreadyValid).
	mustNix(t, env, "nix", "build", "--store", store, "--no-link", pathApp, pathTree)
	// Referrers: none known (a binary cache has no reverse index).
	if got := lines(mustNix(t, env, "nix-store", "--store", store, "-q", "--referrers", pathLib)); len(got) != 0 {
		t.Errorf("--referrers = %q, want none", got)
	}
}

func TestNixCheckValidity(t *testing.T) {
	needNix(t)
	sock := startCore(t, "cache-xz")
	env := nixEnv(t, sock)
	store := "unix://" + sock

	mustNix(t, env, "nix-store", "--store", store, "--check-validity", pathApp, pathTree, pathLink)
	_, stderr, err := nix(t, env, "nix-store", "--store", store, "--check-validity", pathNone)
	if err == nil || !strings.Contains(stderr, "is not valid") {
		t.Errorf("--check-validity of an absent path: err %v, stderr %q; want failure saying it is not valid", err, stderr)
	}
	// QueryValidPaths: --print-invalid lists exactly the absent one.
	got := lines(mustNix(t, env, "nix-store", "--store", store, "--check-validity", "--print-invalid", pathApp, pathNone, pathLib))
	if want := []string{pathNone}; !slices.Equal(got, want) {
		t.Errorf("--print-invalid = %q, want %q", got, want)
	}
}

// pathInfoJSON is what `nix path-info --json` (2.8) prints per path.
type pathInfoJSON struct {
	Path       string   `json:"path"`
	NarHash    string   `json:"narHash"`
	NarSize    int64    `json:"narSize"`
	References []string `json:"references"`
	Deriver    string   `json:"deriver"`
	Signatures []string `json:"signatures"`
	CA         string   `json:"ca"`
	Valid      *bool    `json:"valid"`
}

func TestNixPathInfo(t *testing.T) {
	needNix(t)
	sock := startCore(t, "cache-xz")
	env := nixEnv(t, sock)
	out := mustNix(t, env, "nix", "--extra-experimental-features", "nix-command", "path-info",
		"--store", "unix://"+sock, "--json", "--sigs", pathApp, pathTree, pathNone)
	var infos []pathInfoJSON
	if err := json.Unmarshal([]byte(out), &infos); err != nil {
		t.Fatalf("path-info --json: %v\n%s", err, out)
	}
	byPath := map[string]pathInfoJSON{}
	for _, i := range infos {
		byPath[i.Path] = i
	}
	for _, p := range []string{pathApp, pathTree} {
		got, ok := byPath[p]
		if !ok {
			t.Fatalf("path-info lists no %s: %s", p, out)
		}
		ni := fixtureNarinfo(t, "cache-xz", p)
		if got.NarHash != ni.NarHash.SRI() || got.NarSize != ni.NarSize {
			t.Errorf("%s: narHash %s narSize %d, want %s %d", p, got.NarHash, got.NarSize, ni.NarHash, ni.NarSize)
		}
		var refs []string
		for _, r := range ni.References {
			refs = append(refs, r.Abs("/nix/store"))
		}
		slices.Sort(refs)
		if !slices.Equal(got.References, refs) && !(len(got.References) == 0 && len(refs) == 0) {
			t.Errorf("%s: references %q, want %q", p, got.References, refs)
		}
		if !slices.Equal(got.Signatures, ni.Sigs) {
			t.Errorf("%s: signatures %q, want the cache's verified %q", p, got.Signatures, ni.Sigs)
		}
		if got.CA != ni.CA {
			t.Errorf("%s: ca %q, want %q", p, got.CA, ni.CA)
		}
	}
	if got, ok := byPath[pathNone]; ok && (got.Valid == nil || *got.Valid) {
		t.Errorf("%s: %+v, want it absent or not valid", pathNone, got)
	}
	if byPath[pathApp].Deriver != "/nix/store/fzip1gdhg03vbfswdgn7lfaw7dmfa7an-narfs-test-app.drv" {
		t.Errorf("deriver %q", byPath[pathApp].Deriver)
	}
}

// TestNixPathInfoOnlyVerifiedSigs: a signature that does not verify (here
// one by an unknown key, added to a signed narinfo) is not reported.
func TestNixPathInfoOnlyVerifiedSigs(t *testing.T) {
	needNix(t)
	dir := t.TempDir()
	cache := filepath.Join(dir, "cache")
	if err := os.CopyFS(cache, os.DirFS(filepath.Join(fixtureDir, "cache-xz"))); err != nil {
		t.Fatal(err)
	}
	hash := strings.TrimPrefix(pathApp, "/nix/store/")[:32]
	ni := filepath.Join(cache, hash+".narinfo")
	data, err := os.ReadFile(ni)
	if err != nil {
		t.Fatal(err)
	}
	forged := "other-key-1:" + strings.Repeat("A", 86) + "=="
	os.Chmod(ni, 0o644)
	if err := os.WriteFile(ni, append(data, []byte("Sig: "+forged+"\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	keys := fixtureKeys(t)
	core, err := remote.Open(context.Background(), []string{"file://" + cache},
		remote.Config{TrustedKeys: keys, RequireSigs: true, CacheDir: t.TempDir(), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer core.Close()
	sock := startServer(t, &Server{Store: NewCore(core, keys), Log: testLogger(t)})
	env := nixEnv(t, sock)
	out := mustNix(t, env, "nix", "path-info", "--store", "unix://"+sock, "--json", "--sigs", pathApp)
	if strings.Contains(out, "other-key-1") {
		t.Errorf("path-info reports a signature that does not verify: %s", out)
	}
	if !strings.Contains(out, "narfs-test-1:") {
		t.Errorf("path-info lacks the verified signature: %s", out)
	}
}

// TestNixNarFromPath: real Nix reads NARs through NarFromPath (over
// ssh-ng://, relayed to the socket) byte for byte as the cache holds them,
// and `nix copy` checks them against NarHash on import.
func TestNixNarFromPath(t *testing.T) {
	needNix(t)
	for _, cache := range []string{"cache-none", "cache-xz"} {
		t.Run(cache, func(t *testing.T) {
			sock := startCore(t, cache)
			env := nixEnv(t, sock)
			for _, p := range []string{pathApp, pathTree, pathLink, pathFile} {
				out := mustNix(t, env, "nix", "store", "dump-path", "--store", "ssh-ng://narfs-test", p)
				ni := fixtureNarinfo(t, cache, p)
				want, err := os.ReadFile(filepath.Join(fixtureDir, "cache-none", "nar", strings.TrimPrefix(ni.NarHash.String(), "sha256:")+".nar"))
				if err != nil {
					t.Fatal(err)
				}
				if out != string(want) {
					t.Errorf("--dump %s: %d bytes differ from the cache's NAR (%d bytes)", p, len(out), len(want))
				}
			}
			dst := t.TempDir()
			mustNix(t, env, "nix", "copy", "--from", "ssh-ng://narfs-test", "--to", "file://"+dst, pathApp)
			for _, p := range []string{pathApp, pathLib} {
				hash := strings.TrimPrefix(p, "/nix/store/")[:32]
				if _, err := os.Stat(filepath.Join(dst, hash+".narinfo")); err != nil {
					t.Errorf("nix copy did not copy %s: %v", p, err)
				}
			}
		})
	}
}

// TestNixWriteRefused: write operations reach the client as a Nix error
// that says why.
func TestNixWriteRefused(t *testing.T) {
	needNix(t)
	sock := startCore(t, "cache-xz")
	env := nixEnv(t, sock)
	store := "unix://" + sock
	file := filepath.Join(t.TempDir(), "hello")
	if err := os.WriteFile(file, []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"nix-store", "--store", store, "--add", file},
		{"nix", "store", "add-file", "--store", store, file},
		{"nix-store", "--store", store, "--optimise"},
		{"nix-store", "--store", store, "--delete", pathApp},
		{"nix-store", "--store", store, "--realise", pathNone},
	} {
		_, stderr, err := nix(t, env, args[0], args[1:]...)
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Errorf("%q: err %v, want a failed exit", args, err)
			continue
		}
		if !strings.Contains(stderr, "read-only") && !strings.Contains(stderr, "is not valid") {
			t.Errorf("%q: stderr %q does not carry narfs's refusal", args, stderr)
		}
	}
}
