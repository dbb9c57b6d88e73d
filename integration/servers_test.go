package integration

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// httpCache serves a cache directory on 127.0.0.1 and counts GETs by key
// and the body bytes it sent.
type httpCache struct {
	URL     string
	sent    atomic.Int64
	narSent atomic.Int64
	mu      sync.Mutex
	get     map[string]int
}

// sentCounter counts the body bytes written to a response.
type sentCounter struct {
	http.ResponseWriter
	n   *atomic.Int64
	nar *atomic.Int64 // also, for a NAR file
}

func (w sentCounter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	w.n.Add(int64(n))
	if w.nar != nil {
		w.nar.Add(int64(n))
	}
	return n, err
}

func serveHTTP(t testing.TB, dir string) *httpCache {
	t.Helper()
	h := &httpCache{get: map[string]int{}}
	files := http.FileServer(http.Dir(dir))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		h.get[strings.TrimPrefix(r.URL.Path, "/")]++
		h.mu.Unlock()
		sc := sentCounter{ResponseWriter: w, n: &h.sent}
		if strings.HasPrefix(r.URL.Path, "/nar/") {
			sc.nar = &h.narSent
		}
		files.ServeHTTP(sc, r)
	}))
	t.Cleanup(srv.Close)
	h.URL = srv.URL
	return h
}

// narBytes is the body bytes sent of NAR files.
func (h *httpCache) narBytes() int64 { return h.narSent.Load() }

// narGets counts requests for NAR files.
func (h *httpCache) narGets() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for k, v := range h.get {
		if strings.HasPrefix(k, "nar/") {
			n += v
		}
	}
	return n
}

// s3Server is a versitygw serving directories as buckets on 127.0.0.1.
type s3Server struct {
	Endpoint string // http://127.0.0.1:PORT
	Access   string
	Secret   string
	root     string
}

// versitygw returns the path of the pinned S3 server binary.
func versitygw(t testing.TB) string {
	gobin, err := exec.Command("go", "env", "GOPATH").Output()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(strings.TrimSpace(string(gobin)), "bin", "versitygw")
	if !exists(p) {
		if os.Getenv("CI") != "" {
			t.Fatalf("versitygw is not installed at %s (make deps)", p)
		}
		t.Skipf("versitygw is not installed at %s (make deps)", p)
	}
	return p
}

// startS3 runs versitygw's posix backend over a fresh root directory; the
// test adds buckets as symlinks to cache directories.
func startS3(t testing.TB) *s3Server {
	t.Helper()
	bin := versitygw(t)
	s := &s3Server{Access: "narfsaccess", Secret: "narfs-secret-key-do-not-log", root: t.TempDir()}
	port := freePort(t)
	// Credentials by environment, not flags: flags show up in ps.
	cmd := exec.Command(bin, "--port", fmt.Sprintf("127.0.0.1:%d", port), "--quiet", "posix", "--bucketlinks", s.root)
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+s.Access, "ROOT_SECRET_KEY="+s.Secret)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	s.Endpoint = fmt.Sprintf("http://127.0.0.1:%d", port)
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("versitygw did not start: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return s
}

// bucket exposes dir as bucket name.
func (s *s3Server) bucket(t testing.TB, name, dir string) string {
	t.Helper()
	if err := os.Symlink(dir, filepath.Join(s.root, name)); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("s3://%s?endpoint=%s&region=us-east-1", name, s.Endpoint)
}

// env is what narfs needs to authenticate to the server.
func (s *s3Server) env() []string {
	return []string{"AWS_ACCESS_KEY_ID=" + s.Access, "AWS_SECRET_ACCESS_KEY=" + s.Secret}
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
