package integration

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// rangelessServer is Python's http.server (which ignores Range: every GET
// is a 200 with the whole file) serving a directory on 127.0.0.1, behind a
// TCP proxy that counts what the server sends, by request path. The
// server speaks HTTP/1.0, one request per connection, so each connection
// is one path.
type rangelessServer struct {
	URL string

	mu    sync.Mutex // protects the fields below
	sent  map[string]int64
	reqs  map[string]int
	lines []string
}

func startRangeless(t *testing.T, dir string) *rangelessServer {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed: no real server that ignores Range")
	}
	port := freePort(t)
	cmd := exec.Command(py, "-m", "http.server", "--bind", "127.0.0.1", "--directory", dir, fmt.Sprint(port))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	upstream := fmt.Sprintf("127.0.0.1:%d", port)
	for deadline := time.Now().Add(15 * time.Second); ; {
		c, err := net.Dial("tcp", upstream)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("python3 -m http.server did not start: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &rangelessServer{URL: "http://" + l.Addr().String(), sent: map[string]int64{}, reqs: map[string]int{}}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				srv.proxy(c, upstream)
			}()
		}
	}()
	return srv
}

// proxy forwards one connection, counting the server's bytes that reached
// the client under the request's path.
func (s *rangelessServer) proxy(c net.Conn, upstream string) {
	defer c.Close()
	u, err := net.Dial("tcp", upstream)
	if err != nil {
		return
	}
	defer u.Close()
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil {
		return
	}
	path := "?"
	if f := strings.Fields(line); len(f) >= 2 {
		path = f[1]
	}
	s.mu.Lock()
	s.reqs[path]++
	s.lines = append(s.lines, strings.TrimSpace(line))
	s.mu.Unlock()
	go func() {
		u.Write([]byte(line))
		io.Copy(u, br)
		u.(*net.TCPConn).CloseWrite()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := u.Read(buf)
		if n > 0 {
			w, werr := c.Write(buf[:n])
			s.mu.Lock()
			s.sent[path] += int64(w)
			s.mu.Unlock()
			if werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// under sums bytes sent and requests for paths starting with prefix.
func (s *rangelessServer) under(prefix string) (bytes int64, reqs int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for p, n := range s.sent {
		if strings.HasPrefix(p, prefix) {
			bytes += n
		}
	}
	for p, n := range s.reqs {
		if strings.HasPrefix(p, prefix) {
			reqs += n
		}
	}
	return bytes, reqs
}

func (s *rangelessServer) requests() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.lines, "\n")
}

// TestMountRangelessServer: through the mount, a cache on Python's
// http.server (which ignores Range) costs each object once: the first NAR
// of a stock cache is fetched once (not a thrown-away ranged answer and a
// GET), and three reads far apart in a path of a cache written by narfs
// push cost at most its object (not its prefix per chunk request).
func TestMountRangelessServer(t *testing.T) {
	c := nixClosure(t)
	var tree string
	for _, p := range c.caPaths {
		if strings.HasSuffix(p, "-tree") {
			tree = p
		}
	}
	if tree == "" {
		t.Fatal("the fixture closure has no tree path")
	}
	key := "--trusted-public-keys=" + c.publicKey
	t.Run("stock", func(t *testing.T) {
		srv := startRangeless(t, c.caches["none"])
		m := mountNarfs(t, srv.URL, nil, key)
		got, err := os.ReadFile(filepath.Join(m.Dir, tree, "binary.bin"))
		if err != nil || len(got) == 0 {
			t.Fatalf("read: %v", err)
		}
		size := objectSize(t, c.caches["none"], tree)
		sent, reqs := srv.under("/nar/")
		t.Logf("NAR of %d bytes: %d bytes sent in %d requests", size, sent, reqs)
		if reqs != 1 || sent > size+headerSlack {
			t.Errorf("the NAR (%d bytes) cost %d requests and %d bytes, want 1 and at most its size:\n%s", size, reqs, sent, srv.requests())
		}
	})
	t.Run("pushed", func(t *testing.T) {
		dir := pushClosure(t, c, "--compression", "none")
		srv := startRangeless(t, dir)
		m := mountNarfs(t, srv.URL, nil, key)
		base := filepath.Join(m.Dir, tree)
		// The end, the middle of an 11 MB file, the start.
		out, err := bashC(t, "cat "+base+"/binary.bin >/dev/null && dd if="+base+"/big.txt bs=64k skip=80 count=1 status=none | wc -c && cat "+base+"/a/x >/dev/null")
		if err != nil || strings.TrimSpace(out) != "65536" {
			t.Fatalf("reads: %q, %v", out, err)
		}
		size := objectSize(t, dir, tree)
		if size < 8<<20 {
			t.Fatalf("the tree's object is %d bytes; want several chunks", size)
		}
		sent, reqs := srv.under("/nar/")
		t.Logf("object of %d bytes: %d bytes sent in %d requests", size, sent, reqs)
		if sent > size+int64(reqs)*headerSlack {
			t.Errorf("three reads cost %d bytes of a %d byte object (%d requests), want at most the object:\n%s", sent, size, reqs, srv.requests())
		}
	})
}

// objectSize is the FileSize of base's narinfo in the cache dir.
func objectSize(t *testing.T, dir, base string) int64 {
	t.Helper()
	ni := readNarinfo(t, filepath.Join(dir, hashOf(base)+".narinfo"))
	return ni.FileSize
}

// headerSlack allows for the response headers of each request.
const headerSlack = 1 << 10
