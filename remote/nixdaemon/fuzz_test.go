package nixdaemon

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"
)

// pipeConn is a net.Conn over a fixed input, its output discarded:
// the whole client side of a session in one byte slice.
type pipeConn struct {
	io.Reader
	out int
}

func (c *pipeConn) Write(b []byte) (int, error)      { c.out += len(b); return len(b), nil }
func (c *pipeConn) Close() error                     { return nil }
func (c *pipeConn) LocalAddr() net.Addr              { return nil }
func (c *pipeConn) RemoteAddr() net.Addr             { return nil }
func (c *pipeConn) SetDeadline(time.Time) error      { return nil }
func (c *pipeConn) SetReadDeadline(time.Time) error  { return nil }
func (c *pipeConn) SetWriteDeadline(time.Time) error { return nil }

type seed struct {
	version uint64
	data    []byte
}

// fuzzSeeds are whole client sessions: a handshake at each version of
// interest, then requests of every kind.
func fuzzSeeds() []seed {
	var seeds []seed
	reqs := []*msg{
		new(msg).u64(uint64(OpSetOptions)).u64(0).u64(0).u64(0).u64(0).u64(0).u64(0).u64(0).u64(0).u64(0).u64(0).u64(0).u64(0).u64(1).str("a").str("b"),
		new(msg).u64(uint64(OpQueryPathInfo)).str(memA),
		new(msg).u64(uint64(OpQueryValidPaths)).strs(memA, memNone).u64(0),
		new(msg).u64(uint64(OpQueryPathFromHashPart)).str("00000000000000000000000000000001"),
		new(msg).u64(uint64(OpNarFromPath)).str(memB),
		new(msg).u64(uint64(OpQueryMissing)).strs(memA, memB+".drv!out"),
		new(msg).u64(uint64(OpQuerySubstitutablePathInfos)).u64(1).str(memA).str(""),
		new(msg).u64(uint64(OpBuildPathsWithResults)).strs(memA).u64(0),
		new(msg).u64(uint64(OpAddToStore)).str("x").str("text:sha256").strs().u64(0).framed([]byte("hello")),
		new(msg).u64(uint64(OpAddToStoreNar)).str(memNone).str("").str("00").strs().u64(0).u64(5).u64(0).strs().str("").u64(0).u64(0).framed([]byte("nar")),
		new(msg).u64(uint64(OpBuildDerivation)).str(memNone + ".drv").u64(1).str("out").str(memNone).str("").str("").strs().str("x").str("y").strs().u64(1).str("k").str("v").u64(0),
		new(msg).u64(uint64(OpCollectGarbage)).u64(0).strs().u64(0).u64(0).u64(0).u64(0).u64(0),
		new(msg).u64(99),
	}
	for _, v := range []uint64{ver(21), ver(34), ver(37), ver(38)} {
		all := hello(v)
		for _, r := range reqs {
			one := hello(v)
			one.Write(r.Bytes())
			seeds = append(seeds, seed{v, one.Bytes()})
			all.Write(r.Bytes())
		}
		seeds = append(seeds, seed{v, all.Bytes()})
	}
	return seeds
}

// FuzzServe runs whole sessions of arbitrary client bytes through a
// connection's decoder and handlers (without the panic guard of
// ServeConn, so a panic fails the fuzzer). The seeds run in `go test`.
func FuzzServe(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s.data)
	}
	srv := &Server{Store: newMemStore(), Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	f.Fuzz(func(t *testing.T, in []byte) {
		pc := &pipeConn{Reader: bytes.NewReader(in)}
		cn := &conn{srv: srv, c: pc, d: newDecoder(pc), e: newEncoder(pc), log: srv.log()}
		cn.serve(context.Background())
	})
}

// TestFuzzSeedsServe: the seeds are valid sessions, served to their end.
func TestFuzzSeedsServe(t *testing.T) {
	srv := &Server{Store: newMemStore(), Log: testLogger(t)}
	for i, s := range fuzzSeeds() {
		if minor(s.version) < 34 {
			continue // the requests are laid out as 1.34 and later send them
		}
		pc := &pipeConn{Reader: bytes.NewReader(s.data)}
		cn := &conn{srv: srv, c: pc, d: newDecoder(pc), e: newEncoder(pc), log: srv.log()}
		err := cn.serve(context.Background())
		// Only the unknown operation (last of each session) closes.
		if err != nil && !bytes.HasSuffix(s.data, new(msg).u64(99).Bytes()) {
			t.Errorf("seed %d: %v", i, err)
		}
		if pc.out == 0 {
			t.Errorf("seed %d: no reply", i)
		}
	}
}
