package integration

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// daemonClient is a minimal client of Nix's worker protocol (the daemon
// socket of `narfs mount --nix-daemon-socket`), speaking 1.38 as Nix 2.26
// does, for the read-only queries a local-overlay store or `nix path-info`
// makes. The full description of the protocol is remote/nixdaemon's doc.go;
// its tests have their own client. Errors are returned, not reported, so
// it can run on many goroutines.
type daemonClient struct {
	c net.Conn
	r *bufio.Reader
	w *bufio.Writer
}

const (
	daemonMagic1      = 0x6e697863
	daemonMagic2      = 0x6478696f
	daemonVersion     = 1<<8 | 38
	daemonStderrLast  = 0x616c7473
	daemonStderrError = 0x63787470
	daemonStderrNext  = 0x6f6c6d67

	opIsValidPath     = 1
	opQueryPathInfo   = 26
	opQueryValidPaths = 31
)

// daemonPathInfo is what QueryPathInfo answers of a valid path.
type daemonPathInfo struct {
	Deriver, NarHash string // NarHash in base 16
	References, Sigs []string
	NarSize          uint64
	CA               string
}

// dialDaemon connects and shakes hands; every later read and write must
// progress within timeout.
func dialDaemon(sock string, timeout time.Duration) (*daemonClient, error) {
	c, err := net.Dial("unix", sock)
	if err != nil {
		return nil, err
	}
	dc := &daemonClient{c: c, r: bufio.NewReader(c), w: bufio.NewWriter(c)}
	if err := dc.handshake(timeout); err != nil {
		c.Close()
		return nil, fmt.Errorf("handshake: %w", err)
	}
	return dc, nil
}

func (dc *daemonClient) Close() error { return dc.c.Close() }

func (dc *daemonClient) handshake(timeout time.Duration) error {
	dc.c.SetDeadline(time.Now().Add(timeout))
	dc.u64(daemonMagic1)
	dc.u64(daemonVersion)
	dc.u64(0) // features: none
	dc.u64(0) // CPU affinity: none
	dc.u64(0) // reserveSpace
	if err := dc.w.Flush(); err != nil {
		return err
	}
	var v [2]uint64
	for i := range v {
		var err error
		if v[i], err = dc.read(); err != nil {
			return err
		}
	}
	if v[0] != daemonMagic2 || v[1]>>8 != 1 || v[1]&0xff < 38 {
		return fmt.Errorf("greeting %#x, version %#x", v[0], v[1])
	}
	if _, err := dc.readStrs(); err != nil { // the daemon's features
		return err
	}
	if _, err := dc.readStr(); err != nil { // its version
		return err
	}
	if _, err := dc.read(); err != nil { // whether it trusts us
		return err
	}
	return dc.result()
}

func (dc *daemonClient) u64(v uint64) {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], v)
	dc.w.Write(b[:])
}

func (dc *daemonClient) str(s string) {
	dc.u64(uint64(len(s)))
	dc.w.WriteString(s)
	dc.w.Write(make([]byte, (8-len(s)%8)%8))
}

func (dc *daemonClient) read() (uint64, error) {
	var b [8]byte
	if _, err := io.ReadFull(dc.r, b[:]); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b[:]), nil
}

func (dc *daemonClient) readStr() (string, error) {
	n, err := dc.read()
	if err != nil {
		return "", err
	}
	if n > 1<<20 {
		return "", fmt.Errorf("string of %d bytes", n)
	}
	b := make([]byte, n+(8-n%8)%8)
	if _, err := io.ReadFull(dc.r, b); err != nil {
		return "", err
	}
	return string(b[:n]), nil
}

func (dc *daemonClient) readStrs() ([]string, error) {
	n, err := dc.read()
	if err != nil {
		return nil, err
	}
	if n > 1<<20 {
		return nil, fmt.Errorf("list of %d", n)
	}
	out := make([]string, 0, n)
	for range n {
		s, err := dc.readStr()
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// result reads the stderr channel up to STDERR_LAST; a Nix error is
// returned as an error.
func (dc *daemonClient) result() error {
	for {
		m, err := dc.read()
		if err != nil {
			return err
		}
		switch m {
		case daemonStderrLast:
			return nil
		case daemonStderrNext:
			if _, err := dc.readStr(); err != nil {
				return err
			}
		case daemonStderrError:
			// 1.26+: type, level, name, message, position, traces.
			var msg string
			for i := range 4 {
				var s string
				if i == 1 {
					_, err = dc.read()
				} else {
					s, err = dc.readStr()
				}
				if err != nil {
					return err
				}
				msg = s
			}
			dc.read()
			dc.read()
			return fmt.Errorf("daemon error: %s", msg)
		default:
			return fmt.Errorf("unexpected stderr message %#x", m)
		}
	}
}

// request sends op with its arguments (written by args) and reads the
// stderr channel.
func (dc *daemonClient) request(op uint64, args func()) error {
	dc.c.SetDeadline(time.Now().Add(time.Minute))
	dc.u64(op)
	args()
	if err := dc.w.Flush(); err != nil {
		return err
	}
	return dc.result()
}

// isValidPath asks IsValidPath.
func (dc *daemonClient) isValidPath(p string) (bool, error) {
	if err := dc.request(opIsValidPath, func() { dc.str(p) }); err != nil {
		return false, err
	}
	v, err := dc.read()
	return v == 1, err
}

// queryValidPaths asks QueryValidPaths (no substitution).
func (dc *daemonClient) queryValidPaths(ps []string) ([]string, error) {
	err := dc.request(opQueryValidPaths, func() {
		dc.u64(uint64(len(ps)))
		for _, p := range ps {
			dc.str(p)
		}
		dc.u64(0)
	})
	if err != nil {
		return nil, err
	}
	return dc.readStrs()
}

// queryPathInfo asks QueryPathInfo; nil without an error when the path is
// not valid.
func (dc *daemonClient) queryPathInfo(p string) (*daemonPathInfo, error) {
	if err := dc.request(opQueryPathInfo, func() { dc.str(p) }); err != nil {
		return nil, err
	}
	valid, err := dc.read()
	if err != nil || valid == 0 {
		return nil, err
	}
	var info daemonPathInfo
	var errs []error
	str := func(s *string) {
		v, err := dc.readStr()
		*s = v
		errs = append(errs, err)
	}
	u64 := func() uint64 {
		v, err := dc.read()
		errs = append(errs, err)
		return v
	}
	str(&info.Deriver)
	str(&info.NarHash)
	refs, err := dc.readStrs()
	info.References, errs = refs, append(errs, err)
	u64() // registration time
	info.NarSize = u64()
	u64() // ultimate
	sigs, err := dc.readStrs()
	info.Sigs, errs = sigs, append(errs, err)
	str(&info.CA)
	return &info, errors.Join(errs...)
}
