package nixdaemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	memA    = "/nix/store/00000000000000000000000000000000-a"
	memB    = "/nix/store/00000000000000000000000000000001-b"
	memC    = "/nix/store/00000000000000000000000000000002-c"
	memNone = "/nix/store/00000000000000000000000000000005-none"
)

// queryPathInfo asks for p and decodes the reply at the client's version.
func (cl *client) queryPathInfo(p string) (*PathInfo, bool, string) {
	cl.t.Helper()
	cl.send(new(msg).u64(uint64(OpQueryPathInfo)).str(p))
	if e, ok := cl.result(); !ok {
		return nil, false, e
	}
	if minor(cl.version) >= 17 && cl.u64() == 0 {
		return nil, false, ""
	}
	info := &PathInfo{Path: p, Deriver: cl.str()}
	info.NarHash = []byte(cl.str()) // hex, compared as text
	info.References = cl.strs()
	cl.u64() // registration time
	info.NarSize = cl.u64()
	if minor(cl.version) >= 16 {
		info.Ultimate = cl.u64() == 1
		info.Sigs = cl.strs()
		info.CA = cl.str()
	}
	return info, true, ""
}

// TestHandshakeVersions: every version from Nix 2.0's to one newer than
// narfs's negotiates, and replies take the negotiated version's shape.
func TestHandshakeVersions(t *testing.T) {
	sock := startMem(t, newMemStore(), nil)
	for _, v := range []uint64{ver(21), ver(25), ver(26), ver(33), ver(34), ver(35), ver(37), ver(38), ver(99)} {
		t.Run(fmt.Sprintf("1.%d", minor(v)), func(t *testing.T) {
			cl := dial(t, sock, v)
			info, ok, e := cl.queryPathInfo(memA)
			if !ok {
				t.Fatalf("QueryPathInfo(%s): not valid (%q)", memA, e)
			}
			if string(info.NarHash) != fmt.Sprintf("%x", newMemStore().infos[memA].NarHash) || info.NarSize != 1000 ||
				!slices.Equal(info.References, []string{memB}) {
				t.Errorf("info %+v", info)
			}
			if minor(v) >= 16 && (!slices.Equal(info.Sigs, []string{"k:sig"}) || info.CA != "fixed:r:sha256:x") {
				t.Errorf("sigs %q ca %q", info.Sigs, info.CA)
			}
			// An invalid path: "not valid" in the reply since 1.17, an
			// error before, in the error form of the version.
			_, ok, e = cl.queryPathInfo(memNone)
			if ok {
				t.Fatal("absent path valid")
			}
			if minor(cl.version) < 17 && !strings.Contains(e, "is not valid") {
				t.Errorf("error %q", e)
			}
			// The connection goes on.
			cl.send(new(msg).u64(uint64(OpIsValidPath)).str(memC))
			if _, ok := cl.result(); !ok || cl.u64() != 1 {
				t.Error("IsValidPath after QueryPathInfo")
			}
		})
	}
}

func TestHandshakeRejects(t *testing.T) {
	sock := startMem(t, newMemStore(), nil)
	for name, m := range map[string]*msg{
		"magic":     new(msg).u64(0x12345678),
		"too old":   new(msg).u64(workerMagic1).u64(ver(10)),
		"major 2":   new(msg).u64(workerMagic1).u64(2<<8 | 38),
		"truncated": new(msg).u64(workerMagic1).u64(ver(38)).u64(3),
	} {
		t.Run(name, func(t *testing.T) {
			c, err := net.Dial("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.Write(m.Bytes())
			if name == "truncated" {
				c.(*net.UnixConn).CloseWrite()
			}
			cl := &client{t: t, c: c, r: newReader(c)}
			if !cl.closed() {
				t.Error("connection not closed")
			}
		})
	}
}

// TestBoundsClose: a string or list longer than its bound, or padding that
// is not zero, closes the connection; nothing is allocated for it (see
// TestDecoderBounds).
func TestBoundsClose(t *testing.T) {
	sock := startMem(t, newMemStore(), nil)
	for name, m := range map[string]*msg{
		"string":  new(msg).u64(uint64(OpIsValidPath)).u64(MaxString + 1),
		"huge":    new(msg).u64(uint64(OpIsValidPath)).u64(1 << 62),
		"list":    new(msg).u64(uint64(OpQueryValidPaths)).u64(MaxList + 1),
		"padding": new(msg).u64(uint64(OpIsValidPath)).u64(1).u64(0x0100),
		"options": new(msg).u64(uint64(OpSetOptions)).u64(0).u64(0).u64(0).u64(0).u64(0).u64(0).u64(0).u64(0).u64(0).u64(0).u64(0).u64(0).u64(1 << 40),
	} {
		t.Run(name, func(t *testing.T) {
			cl := dial(t, sock, ver(38))
			cl.send(m)
			if !cl.closed() {
				t.Error("connection not closed")
			}
		})
	}
}

func TestDecoderBounds(t *testing.T) {
	for name, tc := range map[string]struct {
		in   *msg
		read func(d *decoder) error
	}{
		"string":       {new(msg).u64(1 << 40), func(d *decoder) error { _, err := d.str(MaxString); return err }},
		"list":         {new(msg).u64(1 << 40), func(d *decoder) error { _, err := d.strs(MaxString); return err }},
		"boolean":      {new(msg).u64(2), func(d *decoder) error { _, err := d.boolean(); return err }},
		"padding":      {new(msg).u64(3).u64(0x01000000), func(d *decoder) error { _, err := d.str(MaxString); return err }},
		"skipped huge": {new(msg).u64(1 << 63), func(d *decoder) error { return d.skipStr(func() {}) }},
		"budget": {new(msg).u64(MaxList / 4).u64(MaxList / 4).u64(MaxList / 4).u64(MaxList / 4).u64(MaxList / 4), func(d *decoder) error {
			for {
				if _, err := d.count(); err != nil {
					return err
				}
			}
		}},
	} {
		t.Run(name, func(t *testing.T) {
			d := newDecoder(bytes.NewReader(tc.in.Bytes()))
			if err := tc.read(d); !errors.Is(err, ErrProtocol) {
				t.Errorf("err %v, want ErrProtocol", err)
			}
		})
	}
	// Within bounds: round trip with padding.
	in := new(msg).str("").str("1234567").str("12345678").str(strings.Repeat("x", MaxString)).strs("a", "bc")
	d := newDecoder(bytes.NewReader(in.Bytes()))
	for _, want := range []string{"", "1234567", "12345678", strings.Repeat("x", MaxString)} {
		if got, err := d.str(MaxString); err != nil || got != want {
			t.Fatalf("str = %.20q, %v; want %.20q", got, err, want)
		}
	}
	if got, err := d.strs(MaxString); err != nil || !slices.Equal(got, []string{"a", "bc"}) {
		t.Fatalf("strs = %q, %v", got, err)
	}
}

// TestRefusedStaysInStep: a refused write reaches the client as its
// error, its whole payload is skipped, and the connection serves the next
// request.
func TestRefusedStaysInStep(t *testing.T) {
	sock := startMem(t, newMemStore(), nil)
	big := bytes.Repeat([]byte("narfs"), 1<<20) // larger than every bound
	for name, m := range map[string]*msg{
		"AddToStore":         new(msg).u64(uint64(OpAddToStore)).str("x").str("fixed:r:sha256").strs(memA).u64(0).framed(big),
		"AddToStoreNar":      new(msg).u64(uint64(OpAddToStoreNar)).str(memNone).str("").str("00").strs().u64(0).u64(5).u64(0).strs("k:s").str("").u64(0).u64(0).framed(big),
		"AddMultipleToStore": new(msg).u64(uint64(OpAddMultipleToStore)).u64(0).u64(0).framed(big),
		"AddTextToStore":     new(msg).u64(uint64(OpAddTextToStore)).str("x").str(string(big)).strs(),
		"AddBuildLog":        new(msg).u64(uint64(OpAddBuildLog)).str(memA).framed(big),
		"BuildDerivation": new(msg).u64(uint64(OpBuildDerivation)).str(memNone+".drv").
			u64(1).str("out").str(memNone).str("").str("").strs(memA).str("x86_64-linux").str("/bin/sh").strs("-c", "true").
			u64(2).str("out").str(memNone).str("big").str(string(big)).u64(0),
		"CollectGarbage":        new(msg).u64(uint64(OpCollectGarbage)).u64(2).strs(memA).u64(0).u64(0).u64(0).u64(0).u64(0),
		"AddSignatures":         new(msg).u64(uint64(OpAddSignatures)).str(memA).strs("k:s"),
		"RegisterDrvOutput":     new(msg).u64(uint64(OpRegisterDrvOutput)).str(`{"id":"x"}`),
		"OptimiseStore":         new(msg).u64(uint64(OpOptimiseStore)),
		"VerifyStore":           new(msg).u64(uint64(OpVerifyStore)).u64(1).u64(0),
		"ImportPaths":           new(msg).u64(uint64(OpImportPaths)),
		"BuildPaths absent":     new(msg).u64(uint64(OpBuildPaths)).strs(memA, memNone).u64(0),
		"BuildPaths derivation": new(msg).u64(uint64(OpBuildPaths)).strs(memA + ".drv!out").u64(0),
		"BuildPaths repair":     new(msg).u64(uint64(OpBuildPaths)).strs(memA).u64(1),
	} {
		t.Run(name, func(t *testing.T) {
			cl := dial(t, sock, ver(34))
			cl.send(m)
			e, ok := cl.result()
			if ok || !strings.Contains(e, "read-only") {
				t.Fatalf("result %q, %v; want the read-only refusal", e, ok)
			}
			cl.send(new(msg).u64(uint64(OpIsValidPath)).str(memB))
			if _, ok := cl.result(); !ok || cl.u64() != 1 {
				t.Fatal("the connection is out of step after the refusal")
			}
		})
	}
}

// TestUnknownOpCloses: an operation narfs does not know is answered with
// an error and the connection closed (its arguments cannot be skipped).
func TestUnknownOpCloses(t *testing.T) {
	sock := startMem(t, newMemStore(), nil)
	for _, op := range []Op{99, 2, OpQueryFailedPaths, 1 << 40} {
		cl := dial(t, sock, ver(38))
		cl.send(new(msg).u64(uint64(op)))
		if e, ok := cl.result(); ok || !strings.Contains(e, "operation") {
			t.Errorf("op %d: %q, %v", uint64(op), e, ok)
		}
		if !cl.closed() {
			t.Errorf("op %d: connection open", uint64(op))
		}
	}
}

func TestQueries(t *testing.T) {
	sock := startMem(t, newMemStore(), nil)
	cl := dial(t, sock, ver(38))
	check := func(what string, ok bool) {
		t.Helper()
		if !ok {
			t.Errorf("%s", what)
		}
	}
	cl.send(new(msg).u64(uint64(OpSetOptions)).u64(0).u64(0).u64(0).u64(0).u64(0).u64(0).u64(0).u64(0).u64(0).u64(0).u64(0).u64(0).u64(1).str("substituters").str("x"))
	_, ok := cl.result()
	check("SetOptions", ok)
	cl.send(new(msg).u64(uint64(OpQueryValidPaths)).strs(memC, memNone, "/etc/passwd", memA).u64(1))
	_, ok = cl.result()
	check("QueryValidPaths", ok && slices.Equal(cl.strs(), []string{memA, memC}))
	cl.send(new(msg).u64(uint64(OpQueryPathFromHashPart)).str("00000000000000000000000000000001"))
	_, ok = cl.result()
	check("QueryPathFromHashPart", ok && cl.str() == memB)
	cl.send(new(msg).u64(uint64(OpQueryPathFromHashPart)).str("../../etc"))
	_, ok = cl.result()
	check("QueryPathFromHashPart of garbage", ok && cl.str() == "")
	cl.send(new(msg).u64(uint64(OpQuerySubstitutablePaths)).strs(memA, memNone))
	_, ok = cl.result()
	check("QuerySubstitutablePaths", ok && len(cl.strs()) == 0)
	cl.send(new(msg).u64(uint64(OpQuerySubstitutablePathInfos)).u64(1).str(memNone).str(""))
	_, ok = cl.result()
	check("QuerySubstitutablePathInfos", ok && cl.u64() == 0)
	cl.send(new(msg).u64(uint64(OpQueryReferrers)).str(memB))
	_, ok = cl.result()
	check("QueryReferrers", ok && len(cl.strs()) == 0)
	cl.send(new(msg).u64(uint64(OpQueryMissing)).strs(memA, memNone, memB+".drv!out"))
	_, ok = cl.result()
	wb, ws, unknown, dl, ns := cl.strs(), cl.strs(), cl.strs(), cl.u64(), cl.u64()
	check("QueryMissing", ok && len(wb) == 0 && len(ws) == 0 && slices.Equal(unknown, []string{memB + ".drv", memNone}) && dl == 0 && ns == 0)
	for _, op := range []Op{OpAddTempRoot, OpAddIndirectRoot} {
		cl.send(new(msg).u64(uint64(op)).str(memA))
		_, ok = cl.result()
		check(op.String(), ok && cl.u64() == 1)
	}
	cl.send(new(msg).u64(uint64(OpFindRoots)))
	_, ok = cl.result()
	check("FindRoots", ok && cl.u64() == 0)
	cl.send(new(msg).u64(uint64(OpBuildPathsWithResults)).strs(memA, memB).u64(0))
	_, ok = cl.result()
	check("BuildPathsWithResults", ok && cl.u64() == 2)
	for _, p := range []string{memA, memB} {
		// path, status, errorMsg, timesBuilt, isNonDeterministic,
		// startTime, stopTime, cpuUser, cpuSystem, builtOutputs.
		check("result path", cl.str() == p && cl.u64() == buildAlreadyValid && cl.str() == "")
		for range 7 {
			cl.u64()
		}
	}
	cl.send(new(msg).u64(uint64(OpIsValidPath)).str("/nix/store/not-a-store-path"))
	e, ok := cl.result()
	check("IsValidPath of a malformed path", !ok && strings.Contains(e, "not a valid store path"))
	cl.send(new(msg).u64(uint64(OpNarFromPath)).str(memC))
	_, ok = cl.result()
	nar := make([]byte, 1002)
	_, err := ioReadFull(cl, nar)
	check("NarFromPath", ok && err == nil && string(nar) == strings.Repeat("c", 1002))
	cl.send(new(msg).u64(uint64(OpNarFromPath)).str(memNone))
	e, ok = cl.result()
	check("NarFromPath of an absent path", !ok && strings.Contains(e, "is not valid"))
}

// TestNarFromPathFails: a NAR that fails before its first byte is the
// operation's error; one that fails after can only close the connection.
func TestNarFromPathFails(t *testing.T) {
	s := newMemStore()
	s.narErr[memA] = 0
	s.narErr[memB] = 10
	sock := startMem(t, s, nil)
	cl := dial(t, sock, ver(38))
	cl.send(new(msg).u64(uint64(OpNarFromPath)).str(memA))
	if e, ok := cl.result(); ok || !strings.Contains(e, "failed after 0 bytes") {
		t.Fatalf("%q %v", e, ok)
	}
	cl.send(new(msg).u64(uint64(OpNarFromPath)).str(memB))
	if !cl.closed() {
		t.Fatal("connection open after a NAR failed midway")
	}
}

// TestConnectionsIndependent: many clients at once, a client stuck in the
// middle of a request, one that never greets and one whose query blocks
// in the store do not delay the others; the stuck ones are dropped after
// RequestTimeout; a panic closes only its own connection.
func TestConnectionsIndependent(t *testing.T) {
	s := newMemStore()
	release := make(chan struct{})
	s.block[memC] = release
	s.panicOn = memNone
	sock := startMem(t, s, func(srv *Server) { srv.RequestTimeout = 200 * time.Millisecond })

	stuck := dial(t, sock, ver(38))
	stuck.send(new(msg).u64(uint64(OpIsValidPath)).u64(40)) // a string announced, never sent
	mute, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer mute.Close()
	blocked := dial(t, sock, ver(38))
	blocked.send(new(msg).u64(uint64(OpIsValidPath)).str(memC))
	panicky := dial(t, sock, ver(38))
	panicky.send(new(msg).u64(uint64(OpIsValidPath)).str(memNone))

	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 64 {
		wg.Go(func() {
			cl := dial(goroutineTB{t, errs}, sock, ver(34+uint64(i%5)))
			for j := range 20 {
				p := []string{memA, memB}[j%2]
				info, ok, e := cl.queryPathInfo(p)
				if !ok || info.Path != p {
					errs <- fmt.Errorf("client %d: %s: %q", i, p, e)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if !stuck.closed() {
		t.Error("stuck client not dropped")
	}
	if !panicky.closed() {
		t.Error("panicking connection not closed")
	}
	mute.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := mute.Read(make([]byte, 8)); isTimeout(err) {
		t.Error("silent client not dropped")
	}
	close(release)
	if _, ok := blocked.result(); !ok || blocked.u64() != 1 {
		t.Error("blocked query did not finish")
	}
	// The server still serves new connections.
	if _, ok, _ := dial(t, sock, ver(38)).queryPathInfo(memA); !ok {
		t.Error("server dead after a panic")
	}
}

// goroutineTB lets a client fail from a goroutine other than the
// test's: Fatal records the failure and ends that goroutine only.
type goroutineTB struct {
	testing.TB
	errs chan<- error
}

func (g goroutineTB) Helper() {}
func (g goroutineTB) Fatal(args ...any) {
	g.errs <- errors.New(fmt.Sprint(args...))
	runtime.Goexit()
}
func (g goroutineTB) Fatalf(format string, args ...any) {
	g.errs <- fmt.Errorf(format, args...)
	runtime.Goexit()
}

// TestMaxConns: connections beyond MaxConns are closed at once, and a slot
// frees when a connection ends.
func TestMaxConns(t *testing.T) {
	sock := startMem(t, newMemStore(), func(srv *Server) { srv.MaxConns = 2 })
	a := dial(t, sock, ver(38))
	dial(t, sock, ver(38))
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(hello(ver(38)).Bytes())
	third := &client{t: t, c: c, r: newReader(c)}
	if !third.closed() {
		t.Fatal("third connection served")
	}
	a.c.Close()
	// The slot frees once the server sees a's end; retry until it does.
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write(hello(ver(38)).Bytes())
		var b [8]byte
		_, err = c.Read(b[:])
		c.Close()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("slot never freed")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestServeEnds: when accepting fails, Serve closes the connections it
// serves and returns the error instead of waiting for them forever.
func TestServeEnds(t *testing.T) {
	dir, err := os.MkdirTemp("", "nixe")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ln, err := net.Listen("unix", filepath.Join(dir, "s"))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	srv := &Server{Store: newMemStore(), Log: testLogger(t)}
	go func() { done <- srv.Serve(context.Background(), &failingListener{Listener: ln}) }()
	cl := dial(t, filepath.Join(dir, "s"), ver(38)) // idle, open
	ln.Close()                                      // Accept fails
	select {
	case err := <-done:
		if err == nil {
			t.Error("Serve returned nil after its listener failed")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Serve still waiting for an idle connection")
	}
	if !cl.closed() {
		t.Error("connection left open")
	}
}

// failingListener turns the closed listener's error into a plain one, as
// when accept fails for a reason other than Serve's own ending.
type failingListener struct{ net.Listener }

func (l *failingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, fmt.Errorf("accept failed: %w", errors.New("listener broken"))
	}
	return c, nil
}
