package nar

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Writer emits NAR tokens. It tracks the nesting so that every call produces
// well-framed output, but it does not check entry names, their order or
// symlink targets: callers producing real archives sort and validate (as
// Dump does), and tests use this freedom to build hostile archives.
//
// A node is written with File, Symlink, or Directory … EndDirectory. Inside
// a directory each child node is preceded by Entry(name). Close flushes and
// reports an incomplete archive.
type Writer struct {
	w       *bufio.Writer
	off     int64 // bytes written so far
	started bool
	done    bool // the root node is complete
	stack   []entryState
	err     error // sticky
}

type entryState uint8

const (
	entryIdle    entryState = iota // between entries of the directory
	entryPending                   // Entry was called; the child node follows
	entryOpen                      // the child node is being written
)

// NewWriter returns a Writer writing a NAR to w.
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: bufio.NewWriterSize(w, bufSize)}
}

// Directory starts a directory node; end it with EndDirectory.
func (w *Writer) Directory() error {
	if err := w.startNode(); err != nil {
		return err
	}
	w.tokens("(", "type", "directory")
	w.stack = append(w.stack, entryIdle)
	return w.err
}

// Entry starts an entry of the current directory; the next node written is
// its node.
func (w *Writer) Entry(name string) error {
	if w.err != nil {
		return w.err
	}
	if len(w.stack) == 0 || w.stack[len(w.stack)-1] != entryIdle {
		return w.fail(errors.New("Entry outside a directory or inside an unfinished entry"))
	}
	w.tokens("entry", "(", "name", name, "node")
	w.stack[len(w.stack)-1] = entryPending
	return w.err
}

// EndDirectory ends the innermost directory.
func (w *Writer) EndDirectory() error {
	if w.err != nil {
		return w.err
	}
	if len(w.stack) == 0 || w.stack[len(w.stack)-1] != entryIdle {
		return w.fail(errors.New("EndDirectory outside a directory or inside an unfinished entry"))
	}
	w.tokens(")")
	w.stack = w.stack[:len(w.stack)-1]
	w.endNode()
	return w.err
}

// File writes a regular file node whose contents are the next size bytes
// of contents.
func (w *Writer) File(executable bool, size int64, contents io.Reader) error {
	if err := w.startNode(); err != nil {
		return err
	}
	if size < 0 {
		return w.fail(fmt.Errorf("negative file size %d", size))
	}
	w.tokens("(", "type", "regular")
	if executable {
		w.tokens("executable", executableEmpty)
	}
	w.tokens("contents")
	w.uint64(uint64(size))
	if w.err != nil {
		return w.err
	}
	n, err := io.CopyN(w.w, contents, size)
	w.off += n
	if err != nil {
		if err == io.EOF {
			err = fmt.Errorf("file contents: got %d bytes, want %d: %w", n, size, io.ErrUnexpectedEOF)
		}
		return w.fail(err)
	}
	w.padding(uint64(size))
	w.tokens(")")
	w.endNode()
	return w.err
}

// Symlink writes a symlink node.
func (w *Writer) Symlink(target string) error {
	if err := w.startNode(); err != nil {
		return err
	}
	w.tokens("(", "type", "symlink", "target", target, ")")
	w.endNode()
	return w.err
}

// Close flushes the archive. It fails if the root node is incomplete.
func (w *Writer) Close() error {
	if w.err != nil {
		return w.err
	}
	if !w.done {
		return w.fail(errors.New("Close before the root node is complete"))
	}
	if err := w.w.Flush(); err != nil {
		return w.fail(err)
	}
	return nil
}

func (w *Writer) startNode() error {
	if w.err != nil {
		return w.err
	}
	if w.done {
		return w.fail(errors.New("node after the root node is complete"))
	}
	if !w.started {
		w.started = true
		w.tokens(narMagic)
	}
	if n := len(w.stack); n > 0 {
		if w.stack[n-1] != entryPending {
			return w.fail(errors.New("node inside a directory without Entry"))
		}
		w.stack[n-1] = entryOpen
	}
	return w.err
}

// endNode closes the entry holding the node just finished, if any.
func (w *Writer) endNode() {
	if len(w.stack) == 0 {
		w.done = true
		return
	}
	w.tokens(")")
	w.stack[len(w.stack)-1] = entryIdle
}

func (w *Writer) tokens(ss ...string) {
	for _, s := range ss {
		w.uint64(uint64(len(s)))
		if w.err != nil {
			return
		}
		n, err := w.w.WriteString(s)
		w.off += int64(n)
		if err != nil {
			w.fail(err)
			return
		}
		w.padding(uint64(len(s)))
	}
}

var zeros [8]byte

func (w *Writer) padding(n uint64) {
	if w.err != nil {
		return
	}
	p, err := w.w.Write(zeros[:padding(n)])
	w.off += int64(p)
	if err != nil {
		w.fail(err)
	}
}

func (w *Writer) uint64(v uint64) {
	if w.err != nil {
		return
	}
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], v)
	n, err := w.w.Write(b[:])
	w.off += int64(n)
	if err != nil {
		w.fail(err)
	}
}

func (w *Writer) fail(err error) error {
	if w.err == nil {
		w.err = fmt.Errorf("nar: writing at offset %d: %w", w.off, err)
	}
	return w.err
}
