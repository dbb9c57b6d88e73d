package nar

import (
	"bytes"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"testing/iotest"
)

// chunkReader returns reads of random sizes, like a network body.
type chunkReader struct {
	r   io.Reader
	rng *rand.Rand
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(p) > 1 {
		p = p[:1+c.rng.Intn(len(p))]
	}
	return c.r.Read(p)
}

// Network bodies (S3, HTTP) hand out arbitrary short reads; the reader must
// parse the same archive whatever the read sizes.
func TestReaderShortReads(t *testing.T) {
	dumps, err := filepath.Glob("testdata/nix/dumps/*.nar")
	if err != nil || len(dumps) == 0 {
		t.Fatalf("no fixture dumps: %v", err)
	}
	for _, p := range dumps {
		data := readFixture(t, p)
		want, err := BuildListing(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		readers := map[string]io.Reader{
			"one-byte": iotest.OneByteReader(bytes.NewReader(data)),
			"half":     iotest.HalfReader(bytes.NewReader(data)),
			"random":   &chunkReader{bytes.NewReader(data), rand.New(rand.NewSource(int64(len(data))))},
		}
		for name, r := range readers {
			got, err := BuildListing(r)
			if err != nil {
				t.Errorf("%s with %s reads: %v", filepath.Base(p), name, err)
				continue
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s with %s reads: listing differs", filepath.Base(p), name)
			}
		}
	}
}

func readFixture(t *testing.T, p string) []byte {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
