package integration

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPushAndIndexS3: narfs push and narfs index against a real S3
// server (versitygw): the bucket they write is a cache real Nix copies
// from byte for byte (through the directory behind the bucket) and that
// a narfs mount of the s3:// URL reads file by file.
func TestPushAndIndexS3(t *testing.T) {
	c := nixClosure(t)
	s3 := startS3(t)
	dir := t.TempDir()
	url := s3.bucket(t, "pushed", dir)
	out, errOut, code := narfs(t, s3.env(), "push", "--secret-key", c.secretKey, url, "/nix/store/"+c.root)
	if code != 0 || strings.Count(out, "pushed ") != len(c.all) {
		t.Fatalf("narfs push to s3: exit %d\n%s%s", code, out, errOut)
	}
	sameAsStore(t, nixExtract(t, "file://"+dir, c.publicKey, c.all), c.all)
	out, errOut, code = narfs(t, s3.env(), "verify", "--trusted-public-keys="+c.publicKey, url, "--all")
	if code != 0 || strings.Count(out, "ok ") != len(c.all) {
		t.Fatalf("narfs verify of the pushed bucket: exit %d\n%s%s", code, out, errOut)
	}
	m := mountNarfs(t, url, s3.env(), "--trusted-public-keys", c.publicKey)
	lib := c.iaPaths[2]
	if got := readFile(t, filepath.Join(m.Dir, lib, "share/doc/README")); string(got) != "narfs integration\n" {
		t.Errorf("README through the mount of the pushed bucket: %q", got)
	}

	// narfs index upgrades an xz bucket written by nix copy in place.
	xz := copyCache(t, c.caches["xz"])
	xzURL := s3.bucket(t, "upgraded", xz)
	out, errOut, code = narfs(t, s3.env(), "index", "--secret-key", c.secretKey, xzURL, "--all")
	if code != 0 || strings.Count(out, "indexed ") != len(c.all) {
		t.Fatalf("narfs index of an s3 bucket: exit %d\n%s%s", code, out, errOut)
	}
	sameAsStore(t, nixExtract(t, "file://"+xz, c.publicKey, c.all), c.all)
}

// TestPushHTTP: narfs push to an http(s) server that accepts PUT.
func TestPushHTTP(t *testing.T) {
	c := nixClosure(t)
	dir := t.TempDir()
	files := http.FileServer(http.Dir(dir))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPut {
			files.ServeHTTP(w, r)
			return
		}
		p := filepath.Join(dir, filepath.FromSlash(strings.TrimPrefix(r.URL.Path, "/")))
		if !strings.HasPrefix(p, dir+string(filepath.Separator)) {
			http.Error(w, "bad path", http.StatusBadRequest)
			return
		}
		os.MkdirAll(filepath.Dir(p), 0o755)
		f, err := os.Create(p)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		_, err = io.Copy(f, r.Body)
		f.Close()
		if err != nil {
			os.Remove(p)
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusCreated)
	}))
	t.Cleanup(srv.Close)
	out, errOut, code := narfs(t, nil, "push", "--secret-key", c.secretKey, srv.URL, "/nix/store/"+c.root)
	if code != 0 || strings.Count(out, "pushed ") != len(c.all) {
		t.Fatalf("narfs push over http: exit %d\n%s%s", code, out, errOut)
	}
	sameAsStore(t, nixExtract(t, srv.URL, c.publicKey, c.all), c.all)
}
