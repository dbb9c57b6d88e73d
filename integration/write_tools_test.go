package integration

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/narfs/narfs/nar"
)

// hangingCache serves dir over http on 127.0.0.1 and stores PUTs in it,
// except that requests for which hang is true are accepted and never
// answered (until the test ends).
func hangingCache(t *testing.T, dir string, hang func(r *http.Request) bool) string {
	return stallingCache(t, dir, hang, false)
}

// stallingCache is hangingCache; with headers, the requests that hang get
// their response headers (a 200 or 206 of the object's length) and then
// no byte of the body.
func stallingCache(t *testing.T, dir string, hang func(r *http.Request) bool, headers bool) string {
	t.Helper()
	stop := make(chan struct{})
	files := http.FileServer(http.Dir(dir))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hang(r) {
			if headers {
				fi, err := os.Stat(filepath.Join(dir, filepath.FromSlash(strings.TrimPrefix(r.URL.Path, "/"))))
				if err != nil {
					http.NotFound(w, r)
					return
				}
				status, n := http.StatusOK, fi.Size()
				var first, last int64
				if _, err := fmt.Sscanf(r.Header.Get("Range"), "bytes=%d-%d", &first, &last); err == nil {
					status, n = http.StatusPartialContent, min(last, fi.Size()-1)-first+1
					w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", first, first+n-1, fi.Size()))
				}
				w.Header().Set("Content-Length", fmt.Sprint(n))
				w.WriteHeader(status)
				w.(http.Flusher).Flush()
			}
			select {
			case <-r.Context().Done():
			case <-stop:
			}
			return
		}
		if r.Method != http.MethodPut {
			files.ServeHTTP(w, r)
			return
		}
		p := filepath.Join(dir, filepath.FromSlash(strings.TrimPrefix(r.URL.Path, "/")))
		os.MkdirAll(filepath.Dir(p), 0o755)
		f, err := os.Create(p)
		if err == nil {
			_, err = io.Copy(f, r.Body)
			f.Close()
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusCreated)
	}))
	t.Cleanup(func() {
		close(stop)
		srv.Close()
	})
	return srv.URL
}

// narfsWithin runs narfs and fails the test if it has not ended within
// limit (it is then killed).
func narfsWithin(t *testing.T, limit time.Duration, args ...string) (out, errOut string, code int, took time.Duration) {
	t.Helper()
	requireE2E(t)
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, narfsBin, args...)
	var o, e strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &e
	start := time.Now()
	err := cmd.Run()
	took = time.Since(start)
	if ctx.Err() != nil {
		t.Fatalf("narfs %s: still running after %v (killed)\n%s%s", strings.Join(args, " "), limit, o.String(), e.String())
	}
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), code, took
}

// TestWriteToolsTimeout: against a cache that accepts a request and never
// answers, verify, index, push and prefetch fail that operation within
// about --timeout, retries included, with an error that says so — not
// after every attempt's wait, minutes later.
func TestWriteToolsTimeout(t *testing.T) {
	c := nixClosure(t)
	const timeout = "--timeout=2s"
	// Before: 5 attempts of 30 s (verify, index, push) or of --timeout
	// with backoffs between them (prefetch: 15 s at 2 s), per request.
	const limit = 9 * time.Second
	lib := c.iaPaths[2]
	// A path with a >10 MB file: its chunk requests are of MiBs, which the
	// old deadline (--timeout plus their size at 64 KiB/s) let retry.
	var tree string
	for _, p := range c.caPaths {
		if strings.HasSuffix(p, "-tree") {
			tree = p
		}
	}
	keyFlag := "--trusted-public-keys=" + c.publicKey
	isNarinfo := func(h string) func(r *http.Request) bool {
		return func(r *http.Request) bool { return r.URL.Path == "/"+h+".narinfo" }
	}
	narObject := func(r *http.Request) bool { return strings.HasPrefix(r.URL.Path, "/nar/") }
	// Chunk requests of at least 1 MiB: the others answer, so that the
	// path fails on a request whose old deadline was long.
	bigRange := func(r *http.Request) bool {
		var first, last int64
		_, err := fmt.Sscanf(r.Header.Get("Range"), "bytes=%d-%d", &first, &last)
		return narObject(r) && err == nil && last-first+1 >= 1<<20
	}
	check := func(t *testing.T, what string, out, errOut string, code int, took time.Duration) {
		t.Helper()
		t.Logf("%s: exit %d after %v\n%s%s", what, code, took, out, errOut)
		if code != 1 {
			t.Errorf("%s: exit %d, want 1\n%s%s", what, code, out, errOut)
		}
		// The progress deadline and the stall detector share the bound
		// (--timeout); either may be first to say so.
		if said := out + errOut; !strings.Contains(said, "deadline exceeded") && !strings.Contains(said, "timed out") && !strings.Contains(said, "download stalled") {
			t.Errorf("%s: the failure does not say it timed out:\n%s%s", what, out, errOut)
		}
	}

	t.Run("verify-narinfo", func(t *testing.T) {
		url := hangingCache(t, copyCache(t, c.caches["xz"]), isNarinfo(hashOf(lib)))
		out, errOut, code, took := narfsWithin(t, limit, "verify", timeout, keyFlag, url, "/nix/store/"+lib)
		check(t, "verify of a hanging narinfo", out, errOut, code, took)
	})
	t.Run("verify-object", func(t *testing.T) {
		url := hangingCache(t, copyCache(t, c.caches["xz"]), narObject)
		out, errOut, code, took := narfsWithin(t, limit, "verify", timeout, keyFlag, url, "/nix/store/"+lib)
		check(t, "verify of a hanging object", out, errOut, code, took)
	})
	t.Run("index-object", func(t *testing.T) {
		url := hangingCache(t, copyCache(t, c.caches["xz"]), narObject)
		out, errOut, code, took := narfsWithin(t, limit, "index", timeout, keyFlag, "--secret-key", c.secretKey, url, "/nix/store/"+lib)
		check(t, "index of a hanging object", out, errOut, code, took)
	})
	t.Run("push-narinfo", func(t *testing.T) {
		url := hangingCache(t, t.TempDir(), func(r *http.Request) bool { return strings.HasSuffix(r.URL.Path, ".narinfo") })
		out, errOut, code, took := narfsWithin(t, limit, "push", timeout, "--secret-key", c.secretKey, "--no-closure", url, "/nix/store/"+lib)
		check(t, "push to a cache hanging on narinfos", out, errOut, code, took)
	})
	t.Run("push-object", func(t *testing.T) {
		url := hangingCache(t, t.TempDir(), func(r *http.Request) bool { return r.Method == http.MethodPut && narObject(r) })
		out, errOut, code, took := narfsWithin(t, limit, "push", timeout, "--secret-key", c.secretKey, "--no-closure", url, "/nix/store/"+lib)
		check(t, "push of an object to a hanging cache", out, errOut, code, took)
	})
	t.Run("prefetch-chunks", func(t *testing.T) {
		dir := pushClosure(t, c, "--compression", "none") // chunks stored as they are: MiBs per request
		url := hangingCache(t, dir, bigRange)
		out, errOut, code, took := narfsWithin(t, limit, "prefetch", timeout, keyFlag, "--cache-dir="+t.TempDir(), url, "/nix/store/"+tree)
		check(t, "prefetch of hanging chunks", out, errOut, code, took)
	})
	t.Run("prefetch-chunks-stalled", func(t *testing.T) {
		dir := pushClosure(t, c, "--compression", "none") // chunks stored as they are: MiBs per request
		url := stallingCache(t, dir, bigRange, true)
		out, errOut, code, took := narfsWithin(t, limit, "prefetch", timeout, keyFlag, "--cache-dir="+t.TempDir(), url, "/nix/store/"+tree)
		check(t, "prefetch of chunks that stall after the headers", out, errOut, code, took)
	})
	t.Run("verify-object-stalled", func(t *testing.T) {
		url := stallingCache(t, copyCache(t, c.caches["xz"]), narObject, true)
		out, errOut, code, took := narfsWithin(t, limit, "verify", timeout, keyFlag, url, "/nix/store/"+lib)
		check(t, "verify of an object that stalls after the headers", out, errOut, code, took)
	})
	t.Run("prefetch-nar", func(t *testing.T) {
		url := hangingCache(t, copyCache(t, c.caches["xz"]), narObject)
		out, errOut, code, took := narfsWithin(t, limit, "prefetch", timeout, keyFlag, "--cache-dir="+t.TempDir(), url, "/nix/store/"+tree)
		check(t, "prefetch of a hanging NAR", out, errOut, code, took)
	})
}

// TestSecretKeyNeverPrinted: push and index never print key material when
// --secret-key is malformed (the key without its name) and read only a
// few KiB of it (--secret-key /dev/zero fails at once).
func TestSecretKeyNeverPrinted(t *testing.T) {
	c := nixClosure(t)
	sk := strings.TrimSpace(string(readFile(t, c.secretKey)))
	_, b64, _ := strings.Cut(sk, ":")
	nameless := filepath.Join(t.TempDir(), "sk")
	if err := os.WriteFile(nameless, []byte(b64+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cache := "file://" + t.TempDir()
	for _, cmd := range [][]string{
		{"push", "--no-closure", cache, "/nix/store/" + c.iaPaths[2]},
		{"index", cache, hashOf(c.iaPaths[2])},
	} {
		for _, file := range []string{nameless, "/dev/zero"} {
			args := append([]string{cmd[0], "--secret-key", file}, cmd[1:]...)
			out, errOut, code, _ := narfsWithin(t, 20*time.Second, args...)
			if code == 0 || !strings.Contains(errOut, "--secret-key "+file) {
				t.Errorf("narfs %s --secret-key %s: exit %d, want a failure naming the file\n%s%s", cmd[0], file, code, out, errOut)
			}
			for i := 0; i+12 <= len(b64); i++ {
				if strings.Contains(out+errOut, b64[i:i+12]) {
					t.Errorf("narfs %s --secret-key %s printed key material:\n%s%s", cmd[0], file, out, errOut)
					break
				}
			}
		}
	}
}

// hasControl reports a raw control character (a newline ends a line and
// is allowed) or a byte that is not UTF-8 in s.
func hasControl(s string) bool {
	for _, r := range s {
		if r == utf8.RuneError || r != '\n' && !strconv.IsPrint(r) {
			return true
		}
	}
	return false
}

// TestCLIEscapesCacheText: text a cache chose — a narinfo URL with ESC,
// CR, BEL and a bidi override, .ls names and a symlink target with ESC
// and newlines — reaches the terminal escaped, from verify, info and ls;
// one entry stays one line.
func TestCLIEscapesCacheText(t *testing.T) {
	c := nixClosure(t)
	dir := copyCache(t, c.caches["xz"])
	lib := c.iaPaths[2]
	key := "--trusted-public-keys=" + c.publicKey
	hostile := "nar/\x1b[2J\x1b[31m\rok\a\u202e.nar.xz"
	p := filepath.Join(dir, hashOf(lib)+".narinfo")
	ni := readNarinfo(t, p)
	ni.URL = hostile // unsigned: the narinfo stays trusted
	if err := os.WriteFile(p, ni.Marshal(), 0o644); err != nil {
		t.Fatal(err)
	}
	lsPath := filepath.Join(dir, hashOf(lib)+".ls")
	l, err := nar.DecodeListing(readFile(t, lsPath))
	if err != nil {
		t.Fatal(err)
	}
	// A name and a target of the same padded lengths as those they
	// replace, and the name in the same place in order, so that the
	// listing still describes a NAR of NarSize.
	dirNode, err := l.Find("lib")
	if err != nil {
		t.Fatal(err)
	}
	link := dirNode.Entries["libfake.so"] // -> libfake.so.1
	delete(dirNode.Entries, "libfake.so")
	link.Target = "t\x1b]0;t\a\nline"
	dirNode.Entries["libfake.so\x1b\nok x"] = link
	var b strings.Builder
	if err := l.Encode(&b); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(lsPath, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"verify", key, "file://" + dir, "/nix/store/" + lib},
		{"info", key, "--cache-dir=" + t.TempDir(), "file://" + dir, "/nix/store/" + lib},
		{"ls", "-l", key, "--cache-dir=" + t.TempDir(), "file://" + dir, "/nix/store/" + lib + "/lib"},
		{"ls", "-lR", key, "--cache-dir=" + t.TempDir(), "file://" + dir, "/nix/store/" + lib},
	} {
		out, errOut, code := narfs(t, nil, args...)
		t.Logf("narfs %s: exit %d\n%s%s", args[0], code, out, errOut)
		if hasControl(out) || hasControl(errOut) {
			t.Errorf("narfs %s printed raw control characters:\n%q\n%q", args[0], out, errOut)
		}
		if strings.Contains(out, "\nok x") {
			t.Errorf("narfs %s printed a forged line:\n%s", args[0], out)
		}
	}
}

// TestWriteToolsRefuse: push and index refuse a cache for another store
// directory (exit 1, both directories named, nothing written); index
// refuses a path whose narinfo no trusted key signed; push replaces a
// squatted narinfo, and narfs then reads the path.
func TestWriteToolsRefuse(t *testing.T) {
	c := nixClosure(t)
	lib := c.iaPaths[2]

	t.Run("gnu-store", func(t *testing.T) {
		dir := copyCache(t, c.caches["xz"])
		info := "StoreDir: /gnu/store\n"
		os.WriteFile(filepath.Join(dir, "nix-cache-info"), []byte(info), 0o644)
		before := cacheState(t, dir)
		for _, args := range [][]string{
			{"push", "--secret-key", c.secretKey, "file://" + dir, "/nix/store/" + lib},
			{"index", "--secret-key", c.secretKey, "file://" + dir, "--all"},
		} {
			out, errOut, code := narfs(t, nil, args...)
			if code != 1 || !strings.Contains(errOut, `"/gnu/store"`) || !strings.Contains(errOut, `"/nix/store"`) {
				t.Errorf("narfs %s to a /gnu/store cache: exit %d, want 1 naming both store dirs\n%s%s", args[0], code, out, errOut)
			}
		}
		if after := cacheState(t, dir); !maps.Equal(before, after) {
			t.Errorf("the /gnu/store cache changed")
		}
	})

	t.Run("index-untrusted", func(t *testing.T) {
		dir := copyCache(t, c.caches["xz"])
		p := filepath.Join(dir, hashOf(lib)+".narinfo")
		ni := readNarinfo(t, p)
		ni.Sigs = nil
		ni.NarSize = 1 << 30
		os.WriteFile(p, ni.Marshal(), 0o644)
		before := cacheState(t, dir)
		out, errOut, code := narfs(t, nil, "index", "--secret-key", c.secretKey, "file://"+dir, "/nix/store/"+lib)
		if code != 1 || !strings.Contains(out, "not indexing") {
			t.Errorf("index of an unsigned narinfo: exit %d\n%s%s", code, out, errOut)
		}
		if after := cacheState(t, dir); !maps.Equal(before, after) {
			t.Errorf("index of an unsigned narinfo wrote to the cache")
		}
	})

	t.Run("push-squatted", func(t *testing.T) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, hashOf(lib)+".narinfo"), bytes.Repeat([]byte("junk"), 50), 0o644)
		out, errOut, code := narfs(t, nil, "push", "--no-closure", "--secret-key", c.secretKey, "file://"+dir, "/nix/store/"+lib)
		if code != 0 || !strings.Contains(out, "pushed /nix/store/"+lib+" (replaced the narinfo there") {
			t.Fatalf("push over a squatted narinfo: exit %d\n%s%s", code, out, errOut)
		}
		out, errOut, code = narfs(t, nil, "cat", "--trusted-public-keys="+c.publicKey, "--cache-dir="+t.TempDir(), "file://"+dir, lib+"/share/doc/README")
		if code != 0 || out != "narfs integration\n" {
			t.Errorf("narfs cat after the push: exit %d, %q, %s", code, out, errOut)
		}
	})
}
