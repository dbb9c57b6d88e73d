package fetch

import (
	"fmt"
	"hash"
	"io"
	"math"
	"sync"
)

// verifier hashes and counts the decompressed NAR, which reaches it cut
// at NarSize+1 bytes: one byte more than NarSize says is enough to know
// the NAR is longer.
type verifier struct {
	limit int64 // NarSize: any value a cache may send, up to MaxInt64
	n     int64 // at most limit+1 (the stream is cut there), so no overflow
	sha   hash.Hash
	extra hash.Hash // CA hash of the whole NAR, when not sha256
}

// inspect takes the NAR's next bytes (newInspectedReadAhead).
func (v *verifier) inspect(p []byte) error {
	v.n += int64(len(p))
	v.sha.Write(p)
	if v.extra != nil {
		v.extra.Write(p)
	}
	if v.n > v.limit {
		return fmt.Errorf("NAR is longer than NarSize %d", v.limit)
	}
	return nil
}

// satAdd is a+b for non-negative values, at most MaxInt64.
func satAdd(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// drain reads what follows the NAR's last token: there must be nothing.
func drain(r io.Reader) error {
	n, err := io.Copy(io.Discard, r)
	if err != nil {
		return err
	}
	if n > 0 {
		return fmt.Errorf("%d bytes of trailing data after the NAR", n)
	}
	return nil
}

// errRecorder remembers the first error the upstream body returned, to
// tell network failures (retryable) from bad data (corrupt). It is read on
// the read-ahead's goroutine and asked on NAR's: an error that reached
// NAR through the read-ahead was recorded before it was handed over.
type errRecorder struct {
	r   io.Reader
	mu  sync.Mutex
	err error // protected by mu
}

func (e *errRecorder) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF {
		e.mu.Lock()
		if e.err == nil {
			e.err = err
		}
		e.mu.Unlock()
	}
	return n, err
}

func (e *errRecorder) first() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.err
}
