package nixdaemon

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Bounds on what a client may send. A length or count is checked against
// them before anything is allocated for it: a client is as hostile as a
// cache.
const (
	// MaxString bounds one string: a store path, an option name or value,
	// a signature. Nix's own values are far shorter (a store path is at
	// most its directory plus 245 bytes).
	MaxString = 64 << 10
	// MaxList bounds the elements of one list or map (a QueryValidPaths
	// of a whole system closure is a few thousand paths).
	MaxList = 1 << 18
	// MaxRequest bounds the memory one request may make the server hold:
	// the bytes of its strings plus elementCost per list element (its
	// framed payload and the strings it only skips aside), so that MaxList
	// strings of MaxString bytes cannot be asked for at once. With
	// Server.MaxConns connections, the server holds at most MaxConns ×
	// (MaxRequest + 64 KiB of buffers) for its clients' requests.
	MaxRequest = 8 << 20
	// elementCost is what a list element costs in memory beyond its
	// bytes (a string header and its slot in the slice).
	elementCost = 32
)

// ErrProtocol marks input that breaks the protocol (a bound, a padding, a
// value out of range). The connection is closed after it: its framing
// can no longer be trusted.
var ErrProtocol = errors.New("nix daemon protocol violation")

// decoder reads protocol values from a client. Every read is bounded by
// the constants above and by budget, the bytes the current request may
// still use.
type decoder struct {
	r      *bufio.Reader
	budget int64
	buf    [8]byte
}

func newDecoder(r io.Reader) *decoder {
	return &decoder{r: bufio.NewReaderSize(r, 32<<10), budget: MaxRequest}
}

// resetBudget starts a new request.
func (d *decoder) resetBudget() { d.budget = MaxRequest }

func (d *decoder) spend(n int64) error {
	if n > d.budget {
		return fmt.Errorf("%w: request larger than %d bytes", ErrProtocol, MaxRequest)
	}
	d.budget -= n
	return nil
}

func (d *decoder) u64() (uint64, error) {
	if _, err := io.ReadFull(d.r, d.buf[:]); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(d.buf[:]), nil
}

// boolean reads a u64 that must be 0 or 1 (Nix reads any non-zero value
// as true; narfs is strict, as nothing but 0 and 1 is ever sent).
func (d *decoder) boolean() (bool, error) {
	v, err := d.u64()
	if err != nil {
		return false, err
	}
	if v > 1 {
		return false, fmt.Errorf("%w: boolean %d", ErrProtocol, v)
	}
	return v == 1, nil
}

// count reads a list or map length.
func (d *decoder) count() (int, error) {
	n, err := d.u64()
	if err != nil {
		return 0, err
	}
	if n > MaxList {
		return 0, fmt.Errorf("%w: list of %d elements (at most %d)", ErrProtocol, n, MaxList)
	}
	if err := d.spend(int64(n) * elementCost); err != nil {
		return 0, err
	}
	return int(n), nil
}

// str reads a length-prefixed string of at most max bytes and its zero
// padding to a multiple of 8.
func (d *decoder) str(max int) (string, error) {
	n, err := d.u64()
	if err != nil {
		return "", err
	}
	if n > uint64(max) {
		return "", fmt.Errorf("%w: string of %d bytes (at most %d)", ErrProtocol, n, max)
	}
	if err := d.spend(int64(n)); err != nil {
		return "", err
	}
	b := make([]byte, int(n)+padding(n))
	if _, err := io.ReadFull(d.r, b); err != nil {
		return "", noEOF(err)
	}
	for _, c := range b[n:] {
		if c != 0 {
			return "", fmt.Errorf("%w: non-zero padding", ErrProtocol)
		}
	}
	return string(b[:n]), nil
}

// strs reads a list of strings.
func (d *decoder) strs(max int) ([]string, error) {
	n, err := d.count()
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, min(n, 1024))
	for range n {
		s, err := d.str(max)
		if err != nil {
			return nil, noEOF(err)
		}
		out = append(out, s)
	}
	return out, nil
}

// skipFramed discards a framed stream (AddToStore, AddToStoreNar,
// AddMultipleToStore, AddBuildLog): frames of a u64 length and that many
// bytes, unpadded, up to an empty frame. Nothing is kept, so the frames'
// sizes need no bound; the connection's deadline bounds the time.
func (d *decoder) skipFramed(progress func()) error {
	for {
		n, err := d.u64()
		if err != nil {
			return noEOF(err)
		}
		if n == 0 {
			return nil
		}
		for n > 0 {
			progress()
			chunk := min(n, 1<<20)
			if _, err := io.CopyN(io.Discard, d.r, int64(chunk)); err != nil {
				return noEOF(err)
			}
			n -= chunk
		}
	}
}

// noEOF turns an EOF inside a value into ErrUnexpectedEOF: only an EOF
// where a request would start is a clean end.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

func padding(n uint64) int { return int((8 - n%8) % 8) }

// encoder writes protocol values to a client, buffered; the caller
// flushes at the end of each reply.
type encoder struct {
	w   *bufio.Writer
	buf [8]byte
}

func newEncoder(w io.Writer) *encoder { return &encoder{w: bufio.NewWriterSize(w, 32<<10)} }

func (e *encoder) u64(v uint64) {
	binary.LittleEndian.PutUint64(e.buf[:], v)
	e.w.Write(e.buf[:]) // errors are sticky in bufio.Writer; Flush reports them
}

func (e *encoder) boolean(b bool) {
	if b {
		e.u64(1)
	} else {
		e.u64(0)
	}
}

func (e *encoder) str(s string) {
	e.u64(uint64(len(s)))
	e.w.WriteString(s)
	var zero [8]byte
	e.w.Write(zero[:padding(uint64(len(s)))])
}

func (e *encoder) strs(ss []string) {
	e.u64(uint64(len(ss)))
	for _, s := range ss {
		e.str(s)
	}
}

func (e *encoder) flush() error { return e.w.Flush() }
