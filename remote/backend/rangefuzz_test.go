package backend

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FuzzGetRange feeds GetRange hostile offsets and lengths, and the http
// backend hostile answers (status, Content-Range, Content-Length, a body
// of any size). Whatever the numbers, GetRange must not panic, must
// reject a range whose end overflows, and a reader it returns yields at
// most n bytes and exactly n if it ends without error. The file backend
// gets the same offsets against a small file.
func FuzzGetRange(f *testing.F) {
	const maxI = math.MaxInt64
	f.Add(int64(0), int64(10), uint8(206), "bytes 0-9/100", int64(10), uint16(10))
	f.Add(int64(100), int64(50), uint8(200), "", int64(-1), uint16(200))
	f.Add(int64(maxI), int64(1), uint8(206), "bytes 9223372036854775807-9223372036854775807/*", int64(1), uint16(1))
	f.Add(int64(1), int64(maxI), uint8(206), "bytes 1-9223372036854775807/*", int64(maxI), uint16(5))
	f.Add(int64(maxI-1), int64(1), uint8(206), "bytes 9223372036854775806-9223372036854775806/9223372036854775807", int64(-5), uint16(0))
	f.Add(int64(0), int64(0), uint8(200), "", int64(maxI), uint16(3))
	f.Add(int64(5), int64(5), uint8(200), "", int64(9), uint16(20))
	f.Add(int64(-1), int64(2), uint8(206), "bytes -1-0/1", int64(2), uint16(2))
	content := bytes.Repeat([]byte("0123456789"), 10)
	dir := f.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "x"), content, 0o644); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, off, n int64, status uint8, contentRange string, contentLength int64, bodyLen uint16) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		code := map[uint8]int{200: 200, 206: 206, 0: 416}[status]
		if code == 0 {
			code = 206
		}
		body := bytes.Repeat([]byte{'b'}, int(bodyLen))
		tr := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			hdr := http.Header{}
			if contentRange != "" {
				hdr.Set("Content-Range", contentRange)
			}
			return fakeResp(r, code, bytes.NewReader(body), contentLength, hdr), nil
		})
		opts := Options{
			RequestTimeout: time.Second, StallTimeout: time.Second, MaxAttempts: 1,
			RetryBaseDelay: time.Millisecond, NetrcPath: "/nonexistent",
			HTTPClient: &http.Client{Transport: tr},
		}
		overflows := off < 0 || n < 0 || off > math.MaxInt64-n
		for _, raw := range []string{"http://cache.invalid", "file://" + dir} {
			b, err := Open(ctx, mustParse(t, raw), opts)
			if err != nil {
				t.Fatal(err)
			}
			rc, err := b.GetRange(ctx, "x", off, n)
			b.Close()
			if overflows {
				if !errors.Is(err, ErrRange) {
					t.Fatalf("%s: GetRange(%d, %d) = %v, want ErrRange", raw, off, n, err)
				}
				continue
			}
			if err != nil {
				continue
			}
			got, rerr := io.ReadAll(rc)
			rc.Close()
			if int64(len(got)) > n {
				t.Fatalf("%s: GetRange(%d, %d) yielded %d bytes", raw, off, n, len(got))
			}
			if rerr == nil && int64(len(got)) != n {
				t.Fatalf("%s: GetRange(%d, %d) ended cleanly after %d bytes", raw, off, n, len(got))
			}
			if raw[0] == 'f' && rerr == nil && !bytes.Equal(got, content[off:off+n]) {
				t.Fatalf("file: GetRange(%d, %d) returned the wrong bytes", off, n)
			}
		}
	})
}
