package nixdaemon

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// msg builds client messages in the protocol's encoding.
type msg struct{ bytes.Buffer }

func (m *msg) u64(v uint64) *msg {
	binary.Write(&m.Buffer, binary.LittleEndian, v)
	return m
}

func (m *msg) str(s string) *msg {
	m.u64(uint64(len(s)))
	m.WriteString(s)
	m.Write(make([]byte, padding(uint64(len(s)))))
	return m
}

func (m *msg) strs(ss ...string) *msg {
	m.u64(uint64(len(ss)))
	for _, s := range ss {
		m.str(s)
	}
	return m
}

// framed appends data as frames of at most 64 KiB and the empty frame.
func (m *msg) framed(data []byte) *msg {
	for len(data) > 0 {
		n := min(len(data), 64<<10)
		m.u64(uint64(n))
		m.Write(data[:n])
		data = data[n:]
	}
	return m.u64(0)
}

func ver(minor uint64) uint64 { return 1<<8 | minor }

// hello is a client's side of the handshake at version v, as Nix sends
// it (features only at 1.38 and later).
func hello(v uint64) *msg {
	m := new(msg).u64(workerMagic1).u64(v)
	if minor(v) >= 38 {
		m.strs("some-future-feature")
	}
	if minor(v) >= 14 {
		m.u64(0)
	}
	if minor(v) >= 11 {
		m.u64(0)
	}
	return m
}

// client is a minimal Nix client for the tests.
type client struct {
	t       testing.TB
	c       net.Conn
	r       *bufio.Reader
	version uint64 // negotiated
}

func dial(t testing.TB, sock string, v uint64) *client {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	cl := &client{t: t, c: c, r: bufio.NewReader(c)}
	h := hello(v)
	// The daemon answers the greeting before it reads the version.
	if _, err := c.Write(h.Bytes()); err != nil {
		t.Fatal(err)
	}
	if m := cl.u64(); m != workerMagic2 {
		t.Fatalf("magic %#x", m)
	}
	dv := cl.u64()
	if dv != protocolVersion {
		t.Fatalf("daemon version %#x, want %#x", dv, protocolVersion)
	}
	cl.version = min(v, dv)
	if minor(cl.version) >= 38 {
		if f := cl.strs(); len(f) != 0 {
			t.Fatalf("daemon features %q, want none", f)
		}
	}
	if minor(cl.version) >= 33 {
		if s := cl.str(); s != "narfs" {
			t.Fatalf("daemon version string %q", s)
		}
	}
	if minor(cl.version) >= 35 {
		if tr := cl.u64(); tr != 2 {
			t.Fatalf("trusted %d, want 2 (not trusted)", tr)
		}
	}
	if e, ok := cl.result(); !ok {
		t.Fatalf("handshake error %q", e)
	}
	return cl
}

func (cl *client) send(m *msg) {
	cl.t.Helper()
	if _, err := cl.c.Write(m.Bytes()); err != nil {
		cl.t.Fatal(err)
	}
}

func (cl *client) u64() uint64 {
	cl.t.Helper()
	var b [8]byte
	if _, err := io.ReadFull(cl.r, b[:]); err != nil {
		cl.t.Fatalf("reading from the daemon: %v", err)
	}
	return binary.LittleEndian.Uint64(b[:])
}

func (cl *client) str() string {
	cl.t.Helper()
	n := cl.u64()
	if n > 1<<20 {
		cl.t.Fatalf("string of %d bytes", n)
	}
	b := make([]byte, n+uint64(padding(n)))
	if _, err := io.ReadFull(cl.r, b); err != nil {
		cl.t.Fatal(err)
	}
	return string(b[:n])
}

func (cl *client) strs() []string {
	cl.t.Helper()
	n := cl.u64()
	if n > 1<<20 {
		cl.t.Fatalf("list of %d", n)
	}
	out := []string{}
	for range n {
		out = append(out, cl.str())
	}
	return out
}

// result reads the stderr channel up to STDERR_LAST (ok) or an error,
// whose message it returns, in the negotiated version's form.
func (cl *client) result() (errMsg string, ok bool) {
	cl.t.Helper()
	for {
		switch m := cl.u64(); m {
		case stderrLast:
			return "", true
		case stderrError:
			if minor(cl.version) >= 26 {
				if s := cl.str(); s != "Error" {
					cl.t.Fatalf("error type %q", s)
				}
				cl.u64()
				cl.str()
				msg := cl.str()
				if cl.u64() != 0 {
					cl.t.Fatal("error position")
				}
				if n := cl.u64(); n != 0 {
					cl.t.Fatalf("%d traces", n)
				}
				return msg, false
			}
			msg := cl.str()
			cl.u64() // status
			return msg, false
		case stderrNext:
			cl.str()
		default:
			cl.t.Fatalf("unexpected stderr message %#x", m)
		}
	}
}

// closed reports whether the daemon closed the connection (reads EOF or
// reset) within a generous bound.
func (cl *client) closed() bool {
	cl.c.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, err := io.Copy(io.Discard, cl.r)
	return err == nil || !isTimeout(err)
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// memStore is a Store of paths held in memory, for tests of the server
// alone; block and panicOn inject faults.
type memStore struct {
	mu      sync.Mutex
	infos   map[string]*PathInfo
	nars    map[string][]byte
	block   map[string]chan struct{} // QueryPathInfo waits on it
	panicOn string
	narErr  map[string]int // NarFromPath fails after this many bytes
}

func newMemStore() *memStore {
	s := &memStore{infos: map[string]*PathInfo{}, nars: map[string][]byte{}, block: map[string]chan struct{}{}, narErr: map[string]int{}}
	for i, name := range []string{"a", "b", "c"} {
		p := fmt.Sprintf("/nix/store/%032d-%s", i, name)
		nar := []byte(strings.Repeat(name, 1000+i))
		h := sha256.Sum256(nar)
		s.infos[p] = &PathInfo{Path: p, NarHash: h[:], NarSize: uint64(len(nar)),
			Sigs: []string{"k:sig"}, CA: "fixed:r:sha256:x", Deriver: "/nix/store/00000000000000000000000000000009-x.drv"}
		s.nars[p] = nar
	}
	s.infos["/nix/store/00000000000000000000000000000000-a"].References = []string{"/nix/store/00000000000000000000000000000001-b"}
	return s
}

func (s *memStore) StoreDir() string { return "/nix/store" }

func (s *memStore) QueryPathInfo(ctx context.Context, p string) (*PathInfo, bool, error) {
	s.mu.Lock()
	ch, info, pan := s.block[p], s.infos[p], s.panicOn == p
	s.mu.Unlock()
	if pan {
		panic("memStore: panic on " + p)
	}
	if ch != nil {
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
	}
	return info, info != nil, nil
}

func (s *memStore) QueryPathFromHashPart(ctx context.Context, h string) (string, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for p := range s.infos {
		if strings.HasPrefix(p, "/nix/store/"+h+"-") {
			return p, true, nil
		}
	}
	return "", false, nil
}

func (s *memStore) NarFromPath(ctx context.Context, p string, w io.Writer) error {
	s.mu.Lock()
	data := s.nars[p]
	after, fails := s.narErr[p]
	s.mu.Unlock()
	if fails {
		if after > 0 {
			w.Write(data[:after])
		}
		return fmt.Errorf("memStore: NAR of %s failed after %d bytes", p, after)
	}
	_, err := w.Write(data)
	return err
}

func startMem(t testing.TB, s *memStore, tune func(*Server)) string {
	srv := &Server{Store: s, Log: testLogger(t)}
	if tune != nil {
		tune(srv)
	}
	return startServer(t, srv)
}

func newReader(c net.Conn) *bufio.Reader { return bufio.NewReader(c) }

func ioReadFull(cl *client, b []byte) (int, error) { return io.ReadFull(cl.r, b) }
