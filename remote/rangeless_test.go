package remote

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/narfs/narfs/remote/internal/upstream"
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
	port := freeTCPPort(t)
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

func freeTCPPort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
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

// headerSlack allows for the response headers of each request.
const headerSlack = 1 << 10

// TestRangelessServerStockNAR: the first NAR from a server that ignores
// Range crosses the network once: the answer to the ranged probe is the
// NAR, not thrown away and fetched again.
func TestRangelessServerStockNAR(t *testing.T) {
	dir := copyCache(t, "cache-none")
	srv := startRangeless(t, dir)
	s, err := openOne(context.Background(), srv.URL, trustedConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p := mustResolve(t, s, pathTree)
	if p.NarInfo.FileSize <= upstream.FirstPart(s.caches[0].cfg.Parallel) {
		t.Fatalf("fixture NAR of %d bytes is not read by parts", p.NarInfo.FileSize)
	}
	if _, err := s.materialize(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	sent, reqs := srv.under("/nar/")
	t.Logf("NAR of %d bytes: %d bytes sent in %d requests", p.NarInfo.FileSize, sent, reqs)
	if reqs != 1 || sent > p.NarInfo.FileSize+headerSlack {
		t.Errorf("the NAR (%d bytes) cost %d requests and %d bytes, want 1 and at most its size:\n%s",
			p.NarInfo.FileSize, reqs, sent, srv.requests())
	}
	// The answer read whole is counted like any other.
	if st := s.Stats(); st.NarBytes != p.NarInfo.FileSize {
		t.Errorf("Stats.NarBytes %d, want the NAR's %d", st.NarBytes, p.NarInfo.FileSize)
	}
	// Known now: the next NAR is one plain GET.
	if _, err := s.materialize(context.Background(), mustResolve(t, s, pathLib)); err != nil {
		t.Fatal(err)
	}
	if _, reqs := srv.under("/nar/"); reqs != 2 {
		t.Errorf("%d NAR requests for two NARs:\n%s", reqs, srv.requests())
	}
}

// TestRangelessServerIndexedReads: reading files of an indexed path from a
// server that ignores Range fetches the object at most once, whatever
// the reads: the object is streamed once, each chunk verified as it
// passes and kept. Before, every chunk request cost the object's prefix.
func TestRangelessServerIndexedReads(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  func(testing.TB) Config
	}{
		{"by ranges", byRanges},             // reads fetch only what they need
		{"small path whole", trustedConfig}, // and the default fill of small paths
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := makeIndexedCache(t, pathTree, "none")
			if len(c.x.Chunks) < 6 {
				t.Fatalf("an object of %d chunks; want several", len(c.x.Chunks))
			}
			srv := startRangeless(t, c.dir)
			s, err := openOne(context.Background(), srv.URL, tc.cfg(t))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			p := mustResolve(t, s, pathTree)
			// Three reads far apart in the object, the last one first:
			// a small file at its end, 64 KiB in the middle of a large
			// file, a small file at its start.
			files := filesOf(c.listing)
			big := files["big.txt"]
			if big == nil || big.Size < 8<<20 {
				t.Fatal("the fixture has no large big.txt")
			}
			for _, r := range []struct {
				name   string
				off, n int64
			}{
				{"binary.bin", 0, files["binary.bin"].Size},
				{"big.txt", big.Size / 2, 64 << 10},
				{"a/x", 0, files["a/x"].Size},
			} {
				f, err := s.openChunked(context.Background(), p, r.name)
				if err != nil {
					t.Fatal(err)
				}
				got := make([]byte, r.n)
				_, err = f.ReadAt(context.Background(), got, r.off)
				f.Close()
				want := contentsOf(c, files[r.name])[r.off : r.off+r.n]
				if err != nil || !bytes.Equal(got, want) {
					t.Fatalf("%s at %d: %v, or wrong contents", r.name, r.off, err)
				}
			}
			sent, reqs := srv.under("/nar/")
			t.Logf("object of %d bytes: %d bytes sent in %d requests", len(c.object), sent, reqs)
			if sent > int64(len(c.object))+int64(reqs)*headerSlack {
				t.Errorf("three files cost %d bytes of a %d byte object (%d requests), want at most the object:\n%s",
					sent, len(c.object), reqs, srv.requests())
			}
			if st := s.Stats(); st.NarBytes != int64(len(c.object)) {
				t.Errorf("Stats.NarBytes %d, want the object's %d", st.NarBytes, len(c.object))
			}
			// Every chunk passed by is kept: the rest of the path
			// reads with no request.
			for name, n := range files {
				got, err := readChunked(t, s, p, name)
				if err != nil || !bytes.Equal(got, contentsOf(c, n)) {
					t.Fatalf("%s: %v", name, err)
				}
			}
			if sent2, _ := srv.under("/nar/"); sent2 != sent {
				t.Errorf("reading every file fetched %d more bytes", sent2-sent)
			}
		})
	}
}
