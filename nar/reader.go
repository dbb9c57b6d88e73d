package nar

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

// bufSize is the Reader's buffer: large enough for any token (a 4095-byte
// target plus framing) and for efficient reads from slow sources.
const bufSize = 64 << 10

type readerState uint8

const (
	stateStart    readerState = iota
	stateFile                 // inside the contents of a regular file
	stateNodeDone             // a node is complete; its enclosing entry (if any) must close
	stateDir                  // inside a directory: expecting "entry" or ")"
	stateEOF
)

type dirFrame struct {
	path    string
	prev    string // name of the previous entry
	hasPrev bool
}

// Reader reads a NAR stream node by node. See the package documentation for
// what it validates.
type Reader struct {
	src    io.Reader
	srcErr error // sticky error from src, returned once buf is drained
	buf    []byte
	r, w   int   // buf[r:w] holds unread bytes
	off    int64 // NAR offset of buf[r]

	state     readerState
	stack     []dirFrame
	path      string // path of the node being parsed, for errors
	remaining int64  // unread content bytes of the current regular file
	pad       int    // padding after the current file's contents
	err       error  // sticky
}

// NewReader returns a Reader reading a NAR from r.
func NewReader(r io.Reader) *Reader {
	return &Reader{src: r, buf: make([]byte, bufSize)}
}

// Next advances to the next node, skipping any unread contents of the
// current file, and returns its header. It returns io.EOF once the root node
// is complete and the source is exhausted; bytes after the root node are an
// error wrapping ErrInvalid.
func (r *Reader) Next() (*Header, error) {
	if r.err != nil {
		return nil, r.err
	}
	h, err := r.next()
	if err != nil {
		r.err = err
		return nil, err
	}
	return h, nil
}

// Read reads from the contents of the current regular file. It returns
// io.EOF at the end of the file, and (0, io.EOF) if the current node is not
// a regular file.
func (r *Reader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if r.state != stateFile || r.remaining == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.remaining {
		p = p[:r.remaining]
	}
	if len(p) == 0 {
		return 0, nil
	}
	var n int
	switch {
	case r.r < r.w:
		n = copy(p, r.buf[r.r:r.w])
		r.r += n
	case len(p) >= len(r.buf) && r.srcErr == nil:
		// Large read with an empty buffer: read straight into p.
		var err error
		n, err = r.src.Read(p)
		if n < 0 || n > len(p) {
			n, err = 0, errors.New("invalid Read count from source")
		}
		if err != nil {
			r.srcErr = err
		}
	default:
		if err := r.fill(); err != nil {
			r.err = r.srcError(err)
			return 0, r.err
		}
		n = copy(p, r.buf[r.r:r.w])
		r.r += n
	}
	r.off += int64(n)
	r.remaining -= int64(n)
	if n == 0 && r.srcErr != nil {
		r.err = r.srcError(r.srcErr)
		return 0, r.err
	}
	return n, nil
}

func (r *Reader) next() (*Header, error) {
	switch r.state {
	case stateStart:
		off := r.off
		magic, err := r.readString(maxTagLen)
		if err != nil {
			return nil, err
		}
		if string(magic) != narMagic {
			return nil, r.invalid(off, "bad magic %q", magic)
		}
		return r.node("", 0)
	case stateFile:
		if err := r.skipContents(); err != nil {
			return nil, err
		}
		if err := r.expect(")"); err != nil {
			return nil, err
		}
		r.state = stateNodeDone
	}
	for {
		switch r.state {
		case stateEOF:
			return nil, io.EOF
		case stateNodeDone:
			if len(r.stack) == 0 {
				if err := r.checkEnd(); err != nil {
					return nil, err
				}
				r.state = stateEOF
				continue
			}
			r.path = r.stack[len(r.stack)-1].path
			if err := r.expect(")"); err != nil { // closes the entry
				return nil, err
			}
			r.state = stateDir
		case stateDir:
			dir := &r.stack[len(r.stack)-1]
			r.path = dir.path
			off := r.off
			tag, err := r.readString(maxTagLen)
			if err != nil {
				return nil, err
			}
			switch string(tag) {
			case ")":
				r.stack = r.stack[:len(r.stack)-1]
				r.state = stateNodeDone
			case "entry":
				return r.entry(dir)
			default:
				return nil, r.invalid(off, "expected \"entry\" or \")\", got %q", tag)
			}
		default:
			return nil, fmt.Errorf("nar: internal error: state %d", r.state)
		}
	}
}

func (r *Reader) entry(dir *dirFrame) (*Header, error) {
	if err := r.expect("("); err != nil {
		return nil, err
	}
	if err := r.expect("name"); err != nil {
		return nil, err
	}
	off := r.off
	b, err := r.readString(MaxNameLen)
	if err != nil {
		return nil, err
	}
	name := string(b)
	if why := checkName(name); why != "" {
		return nil, r.invalid(off, "%s", why)
	}
	if dir.hasPrev && name <= dir.prev {
		if name == dir.prev {
			return nil, r.invalid(off, "duplicate entry %q", name)
		}
		return nil, r.invalid(off, "entry %q after %q: not in byte order", name, dir.prev)
	}
	dir.prev, dir.hasPrev = name, true
	if err := r.expect("node"); err != nil {
		return nil, err
	}
	return r.node(joinPath(dir.path, name), len(r.stack))
}

// node parses a node up to its contents (regular), its end (symlink) or its
// first entry (directory).
func (r *Reader) node(path string, depth int) (*Header, error) {
	r.path = path
	if depth >= MaxDepth {
		return nil, r.invalid(r.off, "nesting deeper than %d", MaxDepth)
	}
	if err := r.expect("("); err != nil {
		return nil, err
	}
	if err := r.expect("type"); err != nil {
		return nil, err
	}
	off := r.off
	typ, err := r.readString(maxTagLen)
	if err != nil {
		return nil, err
	}
	switch string(typ) {
	case "regular":
		h := &Header{Path: path, Type: TypeRegular}
		off := r.off
		tag, err := r.readString(maxTagLen)
		if err != nil {
			return nil, err
		}
		if string(tag) == "executable" {
			h.Executable = true
			off = r.off
			marker, err := r.readString(maxTagLen)
			if err != nil {
				return nil, err
			}
			if len(marker) != 0 {
				return nil, r.invalid(off, "executable marker %q is not empty", marker)
			}
			off = r.off
			if tag, err = r.readString(maxTagLen); err != nil {
				return nil, err
			}
		}
		if string(tag) != "contents" {
			return nil, r.invalid(off, "expected \"contents\", got %q", tag)
		}
		off = r.off
		n, err := r.readUint64()
		if err != nil {
			return nil, err
		}
		if n > math.MaxInt64 {
			return nil, r.invalid(off, "file size %d does not fit int64", n)
		}
		h.Size, h.Offset = int64(n), r.off
		r.remaining, r.pad = int64(n), padding(n)
		r.state = stateFile
		return h, nil
	case "symlink":
		if err := r.expect("target"); err != nil {
			return nil, err
		}
		off := r.off
		b, err := r.readString(MaxTargetLen)
		if err != nil {
			return nil, err
		}
		target := string(b)
		if why := checkTarget(target); why != "" {
			return nil, r.invalid(off, "%s", why)
		}
		if err := r.expect(")"); err != nil {
			return nil, err
		}
		r.state = stateNodeDone
		return &Header{Path: path, Type: TypeSymlink, LinkTarget: target}, nil
	case "directory":
		r.stack = append(r.stack, dirFrame{path: path})
		r.state = stateDir
		return &Header{Path: path, Type: TypeDirectory}, nil
	}
	return nil, r.invalid(off, "unknown node type %q", typ)
}

// checkEnd makes sure the source ends with the root node. Nix rejects a NAR
// followed by anything, and a caller cannot check for itself: the buffer may
// hold what follows. At most one more read is needed: bytes or (0, io.EOF).
func (r *Reader) checkEnd() error {
	r.path = ""
	if n := r.w - r.r; n > 0 {
		return r.invalid(r.off, "at least %d bytes of trailing data after the NAR", n)
	}
	err := r.fill()
	if n := r.w - r.r; n > 0 {
		return r.invalid(r.off, "at least %d bytes of trailing data after the NAR", n)
	}
	if err == io.EOF {
		return nil
	}
	// Not the data's fault: the transport failed before we could tell.
	return r.srcError(err)
}

// skipContents discards the unread contents of the current file and checks
// its padding.
func (r *Reader) skipContents() error {
	for r.remaining > 0 {
		if r.r == r.w {
			if err := r.fill(); err != nil {
				return r.srcError(err)
			}
		}
		k := int64(r.w - r.r)
		if k > r.remaining {
			k = r.remaining
		}
		r.r += int(k)
		r.off += k
		r.remaining -= k
	}
	return r.skipPadding(r.pad)
}

func (r *Reader) skipPadding(n int) error {
	if n == 0 {
		return nil
	}
	off := r.off
	if err := r.ensure(n); err != nil {
		return err
	}
	for _, c := range r.buf[r.r : r.r+n] {
		if c != 0 {
			return r.invalid(off, "non-zero padding")
		}
	}
	r.advance(n)
	return nil
}

func (r *Reader) readUint64() (uint64, error) {
	if err := r.ensure(8); err != nil {
		return 0, err
	}
	v := binary.LittleEndian.Uint64(r.buf[r.r:])
	r.advance(8)
	return v, nil
}

// readString reads a length-prefixed, zero-padded string of at most max
// bytes. The result aliases the buffer: it is valid until the next read.
func (r *Reader) readString(max int) ([]byte, error) {
	off := r.off
	n, err := r.readUint64()
	if err != nil {
		return nil, err
	}
	if n > uint64(max) {
		return nil, r.invalid(off, "string of %d bytes where at most %d are allowed", n, max)
	}
	// Buffer the string and its padding together: a later fill would
	// compact the buffer under the returned slice.
	if err := r.ensure(int(n) + padding(n)); err != nil {
		return nil, err
	}
	s := r.buf[r.r : r.r+int(n)]
	r.advance(int(n))
	if err := r.skipPadding(padding(n)); err != nil {
		return nil, err
	}
	return s, nil
}

func (r *Reader) expect(tag string) error {
	off := r.off
	got, err := r.readString(maxTagLen)
	if err != nil {
		return err
	}
	if string(got) != tag {
		return r.invalid(off, "expected %q, got %q", tag, got)
	}
	return nil
}

func (r *Reader) advance(n int) {
	r.r += n
	r.off += int64(n)
}

// ensure makes at least n (≤ len(buf)) bytes available in buf[r:w].
func (r *Reader) ensure(n int) error {
	for r.w-r.r < n {
		if err := r.fill(); err != nil {
			return r.srcError(err)
		}
	}
	return nil
}

// fill reads more bytes from src into the buffer, moving unread bytes to the
// front first. It returns an error only if no bytes were added.
func (r *Reader) fill() error {
	if r.srcErr != nil {
		return r.srcErr
	}
	if r.r > 0 {
		r.w = copy(r.buf, r.buf[r.r:r.w])
		r.r = 0
	}
	for range 100 {
		n, err := r.src.Read(r.buf[r.w:])
		if n < 0 || n > len(r.buf)-r.w {
			n, err = 0, errors.New("invalid Read count from source")
		}
		r.w += n
		if err != nil {
			r.srcErr = err
		}
		if n > 0 {
			return nil
		}
		if err != nil {
			return err
		}
	}
	r.srcErr = io.ErrNoProgress
	return r.srcErr
}

// srcError turns an error from the source into the Reader's error.
func (r *Reader) srcError(err error) error {
	if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("nar: truncated at offset %d in %q: %w: %w", r.off+int64(r.w-r.r), r.path, ErrInvalid, io.ErrUnexpectedEOF)
	}
	return fmt.Errorf("nar: reading at offset %d: %w", r.off+int64(r.w-r.r), err)
}

func (r *Reader) invalid(off int64, format string, args ...any) error {
	return fmt.Errorf("nar: %s at offset %d in %q: %w", fmt.Sprintf(format, args...), off, r.path, ErrInvalid)
}

func padding(n uint64) int {
	return int((8 - n%8) % 8)
}
