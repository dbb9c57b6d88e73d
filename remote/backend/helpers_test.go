package backend

import (
	"bytes"
	"compress/zlib"
	"context"
	"net/http"
	"os/exec"
	"testing"
)

func runFilter(argv []string, in []byte) ([]byte, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin = bytes.NewReader(in)
	return cmd.Output()
}

func zlibCompress(t *testing.T, in []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := zlib.NewWriter(&buf)
	w.Write(in)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// mustParse parses a store URL or fails the test.
func mustParse(t *testing.T, raw string) *StoreURL {
	t.Helper()
	u, err := ParseStoreURL(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// mustOpen opens raw with opts and closes the backend at cleanup.
func mustOpen(t *testing.T, raw string, opts Options) Backend {
	t.Helper()
	b, err := Open(context.Background(), mustParse(t, raw), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// roundTripFunc is a fault-injecting http.RoundTripper.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
