package backend

// Lock order: sizedReader.readMu before sizedReader.errMu. Read holds
// readMu for a whole read and records a failure (errMu) under it; state
// and fail take errMu alone, so a caller polling the state never waits
// for a read in progress.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
)

// ErrSizeMismatch: a Put's reader yielded fewer or more bytes than the
// size given. A short reader also wraps io.ErrUnexpectedEOF.
var ErrSizeMismatch = errors.New("reader size mismatch")

// OpenWriter opens u like Open and returns the backend as a Writer too,
// or an error wrapping ErrUnsupported if its scheme cannot store objects.
// The caller closes the Backend.
func OpenWriter(ctx context.Context, u *StoreURL, opts Options) (Backend, Writer, error) {
	b, err := Open(ctx, u, opts)
	if err != nil {
		return nil, nil, err
	}
	w, ok := b.(Writer)
	if !ok {
		b.Close()
		return nil, nil, fmt.Errorf("%s: %w: the store cannot be written", b, ErrUnsupported)
	}
	return b, w, nil
}

// checkSize rejects a negative Put size.
func checkSize(size int64) error {
	if size < 0 {
		return fmt.Errorf("invalid size %d", size)
	}
	return nil
}

// sizedReader yields exactly size bytes of r, or fails. Before it hands out
// the last byte it makes sure r has nothing more, so that an upload of a
// reader that is too long never reaches the server complete: the
// consumer gets an error instead of the final bytes. The context is
// checked at every Read, so a Put reading a slow source still ends at
// its deadline (between Reads).
type sizedReader struct {
	ctx  context.Context
	r    io.Reader
	size int64

	readMu   sync.Mutex // held for a whole Read
	left     int64
	detached bool

	errMu sync.Mutex
	err   error // sticky: io.EOF after exactly size bytes, or the failure
}

func newSizedReader(ctx context.Context, r io.Reader, size int64) *sizedReader {
	return &sizedReader{ctx: ctx, r: r, size: size, left: size}
}

func (s *sizedReader) Read(p []byte) (int, error) {
	s.readMu.Lock()
	defer s.readMu.Unlock()
	if err := s.state(); err != nil {
		return 0, err
	}
	if s.detached {
		return 0, errors.New("request body read after the attempt ended")
	}
	if err := s.ctx.Err(); err != nil {
		return 0, s.fail(err)
	}
	if s.left == 0 {
		return 0, s.end()
	}
	if len(p) == 0 {
		return 0, nil
	}
	if int64(len(p)) > s.left {
		p = p[:s.left]
	}
	n, err := s.r.Read(p)
	if n < 0 || n > len(p) {
		return 0, s.fail(fmt.Errorf("Read returned %d for a %d-byte buffer", n, len(p)))
	}
	s.left -= int64(n)
	switch {
	case s.left == 0 && err == nil:
		if err := s.end(); err != io.EOF {
			return 0, err
		}
		return n, nil
	case s.left == 0 && err == io.EOF:
		s.fail(io.EOF)
		return n, nil
	case err == io.EOF:
		return 0, s.fail(fmt.Errorf("%w: the reader ended after %d of %d bytes: %w",
			ErrSizeMismatch, s.size-s.left, s.size, io.ErrUnexpectedEOF))
	case err != nil:
		return 0, s.fail(fmt.Errorf("reading the object after %d bytes: %w", s.size-s.left-int64(n), err))
	}
	return n, nil
}

// end checks, after size bytes, that r is at its end.
func (s *sizedReader) end() error {
	var b [1]byte
	n, err := io.ReadFull(s.r, b[:])
	switch {
	case n > 0:
		return s.fail(fmt.Errorf("%w: the reader has more than %d bytes", ErrSizeMismatch, s.size))
	case err == io.EOF:
		return s.fail(io.EOF)
	}
	return s.fail(fmt.Errorf("reading the object after %d bytes: %w", s.size, err))
}

func (s *sizedReader) fail(err error) error {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	if s.err == nil {
		s.err = err
	}
	return s.err
}

func (s *sizedReader) state() error {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	return s.err
}

// failed returns the reader's failure (a short or long source, a read
// error, the context), or nil. Safe to call while another goroutine reads.
func (s *sizedReader) failed() error {
	if err := s.state(); err != io.EOF {
		return err
	}
	return nil
}

// complete reports whether exactly size bytes were read and r is at EOF.
func (s *sizedReader) complete() bool { return s.state() == io.EOF }

// detach waits for a Read in progress and makes later Reads fail, so
// that the source can be rewound for another attempt while a transport
// goroutine may still hold the old body.
func (s *sizedReader) detach() {
	s.readMu.Lock()
	s.detached = true
	s.readMu.Unlock()
}
