package fetch

import (
	"io"
	"sync"
)

// readAhead runs r's Reads on a goroutine of its own, at most depth
// buffers of size bytes ahead of the caller, and an inspector over each
// buffer on a second goroutine: the stages (say download and
// decompression; hashing; parsing and writing the NAR) overlap, so a cold
// fetch costs the slowest stage, not their sum.
//
// Close stops the goroutines after the current Read and waits for them;
// the caller makes that Read return (NAR calls Body.Stop first, which
// cancels the download's context).
type readAhead struct {
	full   chan aheadBuf // inspected buffers for the caller, in order; closed after the last
	filled chan aheadBuf // buffers for the inspector, in order
	free   chan []byte   // empty buffers
	stop   chan struct{} // closed by Close
	done   sync.WaitGroup

	// The caller's goroutine only.
	cur  aheadBuf
	rest []byte
	err  error
	once sync.Once
}

type aheadBuf struct {
	b   []byte
	err error // after b's bytes
}

// newInspectedReadAhead starts a readAhead of r: inspect sees every
// buffer, in order, before the caller does (hashing the buffers the
// caller then reads, without copying the stream once more). An error
// from it ends the stream after that buffer.
func newInspectedReadAhead(r io.Reader, depth, size int, inspect func([]byte) error) *readAhead {
	a := &readAhead{
		full:   make(chan aheadBuf, depth),
		filled: make(chan aheadBuf, depth),
		free:   make(chan []byte, depth),
		stop:   make(chan struct{}),
	}
	for range depth {
		a.free <- make([]byte, size)
	}
	a.done.Add(2)
	go a.fill(r)
	go a.inspect(inspect)
	return a
}

// inspect runs inspect over each filled buffer and hands it on.
func (a *readAhead) inspect(inspect func([]byte) error) {
	defer a.done.Done()
	defer close(a.full)
	for c := range a.filled {
		if err := inspect(c.b); err != nil {
			c.err = err
		}
		select {
		case a.full <- c:
		case <-a.stop:
			return
		}
		if c.err != nil {
			return
		}
	}
}

func (a *readAhead) fill(r io.Reader) {
	defer a.done.Done()
	defer close(a.filled)
	for {
		var b []byte
		select {
		case b = <-a.free:
		case <-a.stop:
			return
		}
		// Fill the buffer, so that each hand-over carries a lot.
		n, err := io.ReadFull(r, b)
		if err == io.ErrUnexpectedEOF {
			err = io.EOF
		}
		select {
		case a.filled <- aheadBuf{b: b[:n], err: err}:
		case <-a.stop:
			return
		}
		if err != nil {
			return
		}
	}
}

func (a *readAhead) Read(p []byte) (int, error) {
	for len(a.rest) == 0 {
		if a.err != nil {
			return 0, a.err
		}
		if a.cur.b != nil {
			a.free <- a.cur.b[:cap(a.cur.b)]
			a.cur.b = nil
		}
		c, ok := <-a.full
		if !ok {
			// Only Close ends the goroutine before an error.
			return 0, io.ErrClosedPipe
		}
		a.cur, a.rest, a.err = c, c.b, c.err
	}
	n := copy(p, a.rest)
	a.rest = a.rest[n:]
	return n, nil
}

func (a *readAhead) Close() error {
	a.once.Do(func() { close(a.stop) })
	a.done.Wait()
	return nil
}
