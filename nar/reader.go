package nar

import (
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
