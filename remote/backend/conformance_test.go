package backend

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// fixtureDir is a real cache written by Nix 2.8 (nix copy --to file://…).
const fixtureDir = "../../nar/testdata/nix/cache-zstd"

// fixture is what a backend under test is expected to serve.
type fixture struct {
	files    map[string][]byte // every stored key → its bytes
	narinfos []string          // sorted top-level *.narinfo keys
	// encoded: key → decoded content, for objects stored with a
	// Content-Encoding that ReadAll must remove.
	encoded map[string][]byte
	canList bool
}

// loadFixture reads every regular file of dir as key → bytes.
func loadFixture(t *testing.T, dir string) *fixture {
	t.Helper()
	fx := &fixture{files: map[string][]byte{}, encoded: map[string][]byte{}, canList: true}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(p)
		key := filepath.ToSlash(rel)
		fx.files[key] = data
		if !strings.Contains(key, "/") && strings.HasSuffix(key, ".narinfo") {
			fx.narinfos = append(fx.narinfos, key)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(fx.narinfos)
	if len(fx.narinfos) == 0 || fx.files["nix-cache-info"] == nil {
		t.Fatalf("%s is not a binary cache", dir)
	}
	return fx
}

// keys returns the fixture keys, sorted, optionally only those under nar/.
func (fx *fixture) keys(narOnly bool) []string {
	var ks []string
	for k := range fx.files {
		if !narOnly || strings.HasPrefix(k, "nar/") {
			ks = append(ks, k)
		}
	}
	slices.Sort(ks)
	return ks
}

// readRange returns the bytes of GetRange, or the error from opening or
// reading it.
func readRange(ctx context.Context, b Backend, key string, off, n int64) ([]byte, error) {
	rc, err := b.GetRange(ctx, key, off, n)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func readObject(ctx context.Context, b Backend, key string) ([]byte, *Object, error) {
	obj, err := b.Get(ctx, key)
	if err != nil {
		return nil, nil, err
	}
	defer obj.Body.Close()
	data, err := io.ReadAll(obj.Body)
	return data, obj, err
}

// runConformance is the one suite every backend passes: same cache, same
// answers.
func runConformance(t *testing.T, b Backend, fx *fixture) {
	ctx := context.Background()

	t.Run("NixCacheInfo", func(t *testing.T) {
		data, obj, err := readObject(ctx, b, "nix-cache-info")
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(data, fx.files["nix-cache-info"]) {
			t.Errorf("nix-cache-info = %q, want %q", data, fx.files["nix-cache-info"])
		}
		if obj.Size != int64(len(data)) {
			t.Errorf("Size = %d, want %d", obj.Size, len(data))
		}
	})

	t.Run("GetEveryObject", func(t *testing.T) {
		for _, k := range fx.keys(false) {
			data, obj, err := readObject(ctx, b, k)
			if err != nil {
				t.Fatalf("get %s: %v", k, err)
			}
			if !bytes.Equal(data, fx.files[k]) {
				t.Errorf("get %s: %d bytes differ from the %d stored", k, len(data), len(fx.files[k]))
			}
			if obj.Size != -1 && obj.Size != int64(len(data)) {
				t.Errorf("get %s: Size %d, body %d bytes", k, obj.Size, len(data))
			}
		}
	})

	t.Run("Stat", func(t *testing.T) {
		for _, k := range fx.keys(false) {
			info, err := b.Stat(ctx, k)
			if err != nil {
				t.Fatalf("stat %s: %v", k, err)
			}
			if info.Size != int64(len(fx.files[k])) {
				t.Errorf("stat %s: size %d, want %d", k, info.Size, len(fx.files[k]))
			}
		}
	})

	t.Run("GetRange", func(t *testing.T) {
		for _, k := range fx.keys(true) {
			want := fx.files[k]
			size := int64(len(want))
			cases := [][2]int64{{0, size}, {0, 1}, {1, size - 1}, {size / 2, size - size/2}, {size / 3, size / 3},
				{size - 1, 1}, {size, 0}, {0, 0}}
			for _, c := range cases {
				got, err := readRange(ctx, b, k, c[0], c[1])
				if err != nil {
					t.Fatalf("range %s [%d,+%d) of %d: %v", k, c[0], c[1], size, err)
				}
				if !bytes.Equal(got, want[c[0]:c[0]+c[1]]) {
					t.Errorf("range %s [%d,+%d): wrong bytes (%d returned)", k, c[0], c[1], len(got))
				}
			}
		}
	})

	t.Run("RangeBeyondEnd", func(t *testing.T) {
		k := fx.keys(true)[0]
		size := int64(len(fx.files[k]))
		for _, c := range [][2]int64{{size - 1, 2}, {size, 1}, {size + 10, 5}, {0, size + 1}, {size + 1, 0}, {-1, 1}} {
			got, err := readRange(ctx, b, k, c[0], c[1])
			if !errors.Is(err, ErrRange) {
				t.Errorf("range %s [%d,+%d) of %d: got %d bytes, err %v; want ErrRange", k, c[0], c[1], size, len(got), err)
			}
		}
	})

	t.Run("Missing", func(t *testing.T) {
		const key = "00000000000000000000000000000000.narinfo"
		_, err := b.Get(ctx, key)
		checkNotFound(t, b, "get", key, err)
		_, err = b.Stat(ctx, key)
		checkNotFound(t, b, "stat", key, err)
		_, err = readRange(ctx, b, key, 0, 1)
		checkNotFound(t, b, "range", key, err)
		_, err = ReadAll(ctx, b, key, 1<<20)
		checkNotFound(t, b, "ReadAll", key, err)
	})

	t.Run("List", func(t *testing.T) {
		var got []string
		err := b.List(ctx, ".narinfo", func(k string) error {
			got = append(got, k)
			return nil
		})
		if !fx.canList {
			if !errors.Is(err, ErrUnsupported) {
				t.Fatalf("List = %v, want ErrUnsupported", err)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(got)
		if !slices.Equal(got, fx.narinfos) {
			t.Errorf("List(.narinfo) = %q, want %q", got, fx.narinfos)
		}
		stop := errors.New("stop")
		n := 0
		err = b.List(ctx, ".narinfo", func(string) error { n++; return stop })
		if err != stop || n != 1 {
			t.Errorf("List with failing callback: err %v after %d calls, want the callback's error after 1", err, n)
		}
	})

	t.Run("Concurrent", func(t *testing.T) {
		keys := fx.keys(false)
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		for i := range 64 {
			wg.Go(func() {
				k := keys[i%len(keys)]
				want := fx.files[k]
				data, _, err := readObject(ctx, b, k)
				if err == nil && !bytes.Equal(data, want) {
					err = errors.New("wrong bytes")
				}
				if err == nil && len(want) > 1 {
					var got []byte
					got, err = readRange(ctx, b, k, 1, int64(len(want)-1))
					if err == nil && !bytes.Equal(got, want[1:]) {
						err = errors.New("wrong range bytes")
					}
				}
				if err != nil {
					errs <- fmt.Errorf("%s: %w", k, err)
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})

	t.Run("ReadAll", func(t *testing.T) {
		want := fx.files["nix-cache-info"]
		got, err := ReadAll(ctx, b, "nix-cache-info", 1<<20)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("ReadAll(nix-cache-info) = %q, %v; want %q", got, err, want)
		}
		if _, err := ReadAll(ctx, b, "nix-cache-info", int64(len(want)-1)); !errors.Is(err, ErrTooLarge) {
			t.Errorf("ReadAll with max below size: %v, want ErrTooLarge", err)
		}
		for k, want := range fx.encoded {
			got, err := ReadAll(ctx, b, k, 1<<20)
			if err != nil {
				t.Errorf("ReadAll(%s): %v", k, err)
			} else if !bytes.Equal(got, want) {
				t.Errorf("ReadAll(%s) = %d bytes, not the %d expected decoded bytes", k, len(got), len(want))
			}
			obj, err := b.Get(ctx, k)
			if err != nil {
				t.Fatal(err)
			}
			obj.Body.Close()
			if obj.ContentEncoding == "" {
				t.Errorf("Get(%s).ContentEncoding is empty; the server's header is lost", k)
			}
			if _, err := ReadAll(ctx, b, k, int64(len(want)-1)); !errors.Is(err, ErrTooLarge) {
				t.Errorf("ReadAll(%s) with max below decoded size: %v, want ErrTooLarge", k, err)
			}
		}
	})
}

func checkNotFound(t *testing.T, b Backend, op, key string, err error) {
	t.Helper()
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("%s %s: %v, want ErrNotFound", op, key, err)
		return
	}
	if errors.Is(err, ErrAuth) {
		t.Errorf("%s %s: %v is also ErrAuth", op, key, err)
	}
	if msg := err.Error(); !strings.Contains(msg, key) || !strings.Contains(msg, b.String()) {
		t.Errorf("%s %s: error %q does not name the key and the cache %s", op, key, msg, b)
	}
}

// encodedObjects compresses a few payloads with the real command-line tools
// (independent of the decoders under test), keyed "encoded/<encoding>".
// The value is {encoded bytes, decoded bytes}.
func encodedObjects(t *testing.T, payload []byte) map[string][2][]byte {
	t.Helper()
	out := map[string][2][]byte{}
	for enc, argv := range map[string][]string{
		"gzip":   {"gzip", "-c"},
		"x-gzip": {"gzip", "-c"},
		"br":     {"brotli", "-c"},
		"zstd":   {"zstd", "-q", "-c"},
		"xz":     {"xz", "-c"},
		"bzip2":  {"bzip2", "-c"},
	} {
		data, err := runFilter(argv, payload)
		if err != nil {
			t.Fatalf("%s: %v (run .ci/deps)", argv[0], err)
		}
		out["encoded/"+enc] = [2][]byte{data, payload}
	}
	out["encoded/deflate"] = [2][]byte{zlibCompress(t, payload), payload}
	out["encoded/identity"] = [2][]byte{payload, payload}
	return out
}
