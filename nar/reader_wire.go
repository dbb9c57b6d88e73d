package nar

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

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
