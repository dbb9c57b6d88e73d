package backend

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/narfs/narfs/nar/compress"
)

func TestReadAllStackedAndUnknownEncodings(t *testing.T) {
	plain := []byte("StorePath: /nix/store/x\n")
	gz, err := runFilter([]string{"gzip", "-c"}, plain)
	must(t, err)
	gzbr, err := runFilter([]string{"brotli", "-c"}, gz)
	must(t, err)
	objects := map[string]struct {
		enc  string
		body []byte
	}{
		"stacked":  {"gzip, br", gzbr}, // gzip applied first, then br
		"upper":    {"GZIP", gz},
		"unknown":  {"compress", plain},
		"corrupt":  {"zstd", plain},
		"identity": {"identity", plain},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o := objects[r.URL.Path[1:]]
		w.Header().Set("Content-Encoding", o.enc)
		w.Write(o.body)
	}))
	t.Cleanup(srv.Close)
	b := mustOpen(t, srv.URL, faultOpts())
	ctx := context.Background()
	for _, k := range []string{"stacked", "upper", "identity"} {
		got, err := ReadAll(ctx, b, k, 1<<10)
		if err != nil || !bytes.Equal(got, plain) {
			t.Errorf("%s: %q, %v", k, got, err)
		}
	}
	if _, err := ReadAll(ctx, b, "unknown", 1<<10); !errors.Is(err, compress.ErrUnsupported) {
		t.Errorf("unknown encoding: %v, want compress.ErrUnsupported", err)
	}
	if _, err := ReadAll(ctx, b, "corrupt", 1<<10); err == nil {
		t.Error("corrupt zstd decoded without error")
	}
}

// TestReadAllBombBounded: a small compressed object that expands hugely
// stops at max.
func TestReadAllBombBounded(t *testing.T) {
	bomb, err := runFilter([]string{"zstd", "-q", "-c"}, make([]byte, 64<<20))
	must(t, err)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Encoding", "zstd")
		w.Write(bomb)
	}))
	t.Cleanup(srv.Close)
	_, err = ReadAll(context.Background(), mustOpen(t, srv.URL, faultOpts()), "x.narinfo", 1<<20)
	if !errors.Is(err, ErrTooLarge) {
		t.Errorf("decompression bomb: %v, want ErrTooLarge", err)
	}
}

func FuzzParseContentRange(f *testing.F) {
	for _, s := range []string{"bytes 0-0/1", "bytes 100-50099/65536", "bytes 5-9/*", "bytes 9-5/10", "bytes -1-2/3",
		// Hostile numbers: int64 limits, beyond them, signs.
		"bytes 0-9223372036854775807/*", "bytes 9223372036854775807-9223372036854775807/*",
		"bytes 0-9223372036854775806/9223372036854775807", "bytes 0-1/9223372036854775808",
		"bytes 18446744073709551615-0/1", "bytes +1-2/3", "bytes 1-+2/3", "bytes 0-0/-1", "bytes 0-0/+1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		s, e, tot, err := parseContentRange(v)
		if err != nil {
			return
		}
		if s < 0 || e < s || (tot != -1 && tot <= e) {
			t.Fatalf("%q parsed to inconsistent %d-%d/%d", v, s, e, tot)
		}
		if strings.ContainsAny(v, "+") || strings.Count(v, "-") != 1 {
			t.Fatalf("%q has a signed number but parsed to %d-%d/%d", v, s, e, tot)
		}
	})
}
