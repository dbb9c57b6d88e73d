package integration

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// hangingCache serves dir over http on 127.0.0.1 and stores PUTs in it,
// except that requests for which hang is true are accepted and never
// answered (until the test ends).
func hangingCache(t *testing.T, dir string, hang func(r *http.Request) bool) string {
	t.Helper()
	stop := make(chan struct{})
	files := http.FileServer(http.Dir(dir))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hang(r) {
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
	keyFlag := "--trusted-public-keys=" + c.publicKey
	isNarinfo := func(h string) func(r *http.Request) bool {
		return func(r *http.Request) bool { return r.URL.Path == "/"+h+".narinfo" }
	}
	narObject := func(r *http.Request) bool { return strings.HasPrefix(r.URL.Path, "/nar/") }
	check := func(t *testing.T, what string, out, errOut string, code int, took time.Duration) {
		t.Helper()
		t.Logf("%s: exit %d after %v\n%s%s", what, code, took, out, errOut)
		if code != 1 {
			t.Errorf("%s: exit %d, want 1\n%s%s", what, code, out, errOut)
		}
		if !strings.Contains(out+errOut, "deadline exceeded") && !strings.Contains(out+errOut, "timed out") {
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
		dir := pushClosure(t, c)
		url := hangingCache(t, dir, func(r *http.Request) bool { return narObject(r) && r.Header.Get("Range") != "" })
		out, errOut, code, took := narfsWithin(t, limit, "prefetch", timeout, keyFlag, "--cache-dir="+t.TempDir(), url, "/nix/store/"+lib)
		check(t, "prefetch of hanging chunks", out, errOut, code, took)
	})
	t.Run("prefetch-nar", func(t *testing.T) {
		url := hangingCache(t, copyCache(t, c.caches["xz"]), narObject)
		out, errOut, code, took := narfsWithin(t, limit, "prefetch", timeout, keyFlag, "--cache-dir="+t.TempDir(), url, "/nix/store/"+lib)
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
