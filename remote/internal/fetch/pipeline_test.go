package fetch

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
)

// The stream reaches the caller unchanged; the inspector sees the same
// bytes in the same order first; its error ends the stream after the
// buffer it was given.
func TestInspectedReadAhead(t *testing.T) {
	data := make([]byte, 1<<20+123)
	for i := range data {
		data[i] = byte(rand.IntN(256))
	}
	var seen bytes.Buffer
	r := newInspectedReadAhead(bytes.NewReader(data), 3, 4096, func(p []byte) error {
		seen.Write(p)
		return nil
	})
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes (%v), want the %d written", len(got), err, len(data))
	}
	if !bytes.Equal(seen.Bytes(), data) {
		t.Fatalf("the inspector saw %d bytes, not the stream's %d", seen.Len(), len(data))
	}

	stop := errors.New("enough")
	n := 0
	r = newInspectedReadAhead(bytes.NewReader(data), 3, 4096, func(p []byte) error {
		if n += len(p); n > 10000 {
			return stop
		}
		return nil
	})
	got, err = io.ReadAll(r)
	r.Close()
	if !errors.Is(err, stop) || len(got) != 12288 || !bytes.Equal(got, data[:len(got)]) {
		t.Fatalf("with the inspector failing past 10000 bytes: %d bytes, %v; want 12288 (three buffers) and its error", len(got), err)
	}

	// Close while nobody reads stops both goroutines.
	r = newInspectedReadAhead(bytes.NewReader(data), 2, 4096, func([]byte) error { return nil })
	r.Close()
}
