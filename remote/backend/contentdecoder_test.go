package backend

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/narfs/narfs/nar/compress"
)

// NewContentDecoder streams what ReadAll decodes: stacked codings removed
// last-applied first, identity untouched, unknown codings refused.
func TestNewContentDecoder(t *testing.T) {
	want := bytes.Repeat([]byte("narfs "), 10000)
	var z bytes.Buffer
	zw := zlib.NewWriter(&z)
	zw.Write(want)
	zw.Close()
	var gz bytes.Buffer
	gw := gzip.NewWriter(&gz)
	gw.Write(z.Bytes())
	gw.Close()
	for enc, body := range map[string][]byte{
		"":                want,
		"identity":        want,
		"deflate":         z.Bytes(),
		"deflate, GZIP":   gz.Bytes(),
		"identity,x-gzip": func() []byte { var b bytes.Buffer; w := gzip.NewWriter(&b); w.Write(want); w.Close(); return b.Bytes() }(),
	} {
		r, err := NewContentDecoder(enc, bytes.NewReader(body))
		if err != nil {
			t.Fatalf("%q: %v", enc, err)
		}
		got, err := io.ReadAll(r)
		r.Close()
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%q: %d bytes, %v", enc, len(got), err)
		}
	}
	if _, err := NewContentDecoder("gzip, compress", strings.NewReader("")); !errors.Is(err, compress.ErrUnsupported) {
		t.Errorf("unknown coding: %v", err)
	}
}
