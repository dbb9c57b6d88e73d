package upload

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/narfs/narfs/remote/backend"
	"github.com/narfs/narfs/remote/narinfo"
)

// editNarinfo rewrites a narinfo of a file:// cache.
func editNarinfo(t *testing.T, dir, hash string, edit func(ni *narinfo.NarInfo)) {
	t.Helper()
	p := filepath.Join(dir, hash+".narinfo")
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	ni, err := narinfo.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	edit(ni)
	if err := os.WriteFile(p, ni.Marshal(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestPushReplacesSquatted: a narinfo at the path's name that is junk,
// another path's, unsigned, or for other contents does not make push skip
// the path: push replaces it and says so, and real Nix then reads the
// path. A narinfo push itself wrote is kept.
func TestPushReplacesSquatted(t *testing.T) {
	f := nixFixture(t)
	paths := query(t, false, f.tree)
	hash := storeHash(f.tree)
	other := storeHash(f.ref)
	for name, squat := range map[string]func(t *testing.T, dir string, own, others []byte){
		"junk": func(t *testing.T, dir string, _, _ []byte) {
			os.WriteFile(filepath.Join(dir, hash+".narinfo"), bytes.Repeat([]byte{0xa5}, 200), 0o644)
		},
		"another path's": func(t *testing.T, dir string, _, others []byte) {
			os.WriteFile(filepath.Join(dir, hash+".narinfo"), others, 0o644)
		},
		"unsigned": func(t *testing.T, dir string, own, _ []byte) {
			os.WriteFile(filepath.Join(dir, hash+".narinfo"), own, 0o644)
			editNarinfo(t, dir, hash, func(ni *narinfo.NarInfo) { ni.Sigs = nil })
		},
		"object missing": func(t *testing.T, dir string, own, _ []byte) {
			os.WriteFile(filepath.Join(dir, hash+".narinfo"), own, 0o644)
			editNarinfo(t, dir, hash, func(ni *narinfo.NarInfo) { ni.URL = "nar/0000000000000000000000000000000000000000000000000000.nar" })
		},
	} {
		t.Run(name, func(t *testing.T) {
			// A reference cache gives a valid narinfo of each path.
			ref, refDir := emptyCache(t)
			pushAll(t, ref, query(t, true, f.ref), PushOptions{Key: f.key})
			own, _ := os.ReadFile(filepath.Join(refDir, hash+".narinfo"))
			others, _ := os.ReadFile(filepath.Join(refDir, other+".narinfo"))

			c, dir := emptyCache(t)
			squat(t, dir, own, others)
			rs := pushAll(t, c, paths, PushOptions{Key: f.key})
			if len(rs) != 1 || rs[0].Err != nil || rs[0].Skipped || rs[0].Replaced == "" {
				t.Fatalf("push over a squatted narinfo: %+v", rs)
			}
			t.Logf("replaced: %s", rs[0].Replaced)
			ni, err := c.readNarinfo(context.Background(), hash)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := ni.Verify([]narinfo.PublicKey{f.key.Public()}); err != nil {
				t.Errorf("the narinfo after push: %v", err)
			}
			sameTree(t, nixCopyFrom(t, "file://"+dir, f.publicKey, f.tree), f.tree)

			rs = pushAll(t, c, paths, PushOptions{Key: f.key})
			if len(rs) != 1 || !rs[0].Skipped {
				t.Errorf("second push: %+v, want skipped", rs)
			}
		})
	}
}

// TestIndexRefusesUntrusted: index does not sign a path whose narinfo no
// trusted key signed (here: content-addressed, NarSize 1 GiB, over a
// small zstd of zeros), and writes nothing for it; the same narinfo
// signed by a trusted key is indexed.
func TestIndexRefusesUntrusted(t *testing.T) {
	f := nixFixture(t)
	c, dir := nixCache(t, f, "compression=zstd")
	hash := storeHash(f.tree)
	zeros, _ := zstd.NewWriter(nil)
	bomb := zeros.EncodeAll(make([]byte, 8<<20), nil)
	var url string
	editNarinfo(t, dir, hash, func(ni *narinfo.NarInfo) {
		ni.Sigs, ni.NarSize = nil, 1<<30
		ni.FileHash, ni.FileSize = nil, 0
		url = ni.URL
	})
	if err := os.WriteFile(filepath.Join(dir, url), bomb, 0o644); err != nil {
		t.Fatal(err)
	}
	before := fileHashes(t, dir)
	var rs []IndexResult
	if err := c.IndexAll(context.Background(), []string{hash}, IndexOptions{Key: f.key}, func(r IndexResult) { rs = append(rs, r) }); err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 || !errors.Is(rs[0].Err, narinfo.ErrUntrusted) || !strings.Contains(rs[0].Err.Error(), "not indexing") {
		t.Fatalf("index of an unsigned narinfo: %+v", rs)
	}
	if after := fileHashes(t, dir); !maps.Equal(before, after) {
		t.Errorf("index of an untrusted path wrote to the cache: %d files before, %d after", len(before), len(after))
	}

	// Signed by a trusted key (of another name than the indexing key's):
	// indexed.
	c2, dir2 := nixCache(t, f, "compression=zstd")
	other := f.key
	other.Name = "narfs-other-1"
	editNarinfo(t, dir2, hash, func(ni *narinfo.NarInfo) {
		sig, err := f.key.Sign(ni)
		if err != nil {
			t.Fatal(err)
		}
		ni.Sigs = []string{"narfs-other-1" + sig[strings.Index(sig, ":"):]}
	})
	var r2 []IndexResult
	c2.IndexAll(context.Background(), []string{hash}, IndexOptions{Key: f.key, Trusted: []narinfo.PublicKey{other.Public()}}, func(r IndexResult) { r2 = append(r2, r) })
	if len(r2) != 1 || r2[0].Err != nil {
		t.Errorf("index of a narinfo signed by a trusted key: %+v", r2)
	}
}

// TestBoundedTemporaries: verify of an object that never ends, and index
// of a trusted path whose object (unsigned URL, FileSize) was swapped for
// a decompression bomb, stop one byte past what the narinfo allows.
func TestBoundedTemporaries(t *testing.T) {
	f := nixFixture(t)
	_, dir := nixCache(t, f, "compression=zstd")
	hash := storeHash(f.tree)
	ni, err := narinfo.Parse(mustRead(t, filepath.Join(dir, hash+".narinfo")))
	if err != nil {
		t.Fatal(err)
	}

	// An object served without end (stopped at 256 MiB, so that a
	// verify without the bound ends too).
	var sent atomic.Int64
	files := http.FileServer(http.Dir(dir))
	stop := make(chan struct{})
	var once sync.Once
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/"+ni.URL {
			files.ServeHTTP(w, r)
			return
		}
		buf := bytes.Repeat([]byte{0x28}, 64<<10)
		for sent.Load() < 256<<20 {
			select {
			case <-stop:
				return
			default:
			}
			n, err := w.Write(buf)
			sent.Add(int64(n))
			if err != nil {
				return
			}
		}
	}))
	t.Cleanup(func() { once.Do(func() { close(stop) }); srv.Close() })
	c, err := OpenRead(context.Background(), srv.URL, backend.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r, err := c.Verify(context.Background(), hash, VerifyOptions{Keys: []narinfo.PublicKey{f.key.Public()}, TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	// Loopback socket buffers let the server write some MiB more than
	// was read.
	if got := sent.Load(); got > objectBound(ni)+32<<20 || len(r.Reasons) == 0 || !strings.Contains(strings.Join(r.Reasons, ";"), "more than") {
		t.Errorf("verify of an endless object: %d bytes sent (bound %d), reasons %q", got, objectBound(ni), r.Reasons)
	}

	// Index: the NAR decoded from the bomb is cut at NarSize.
	c2, dir2 := nixCache(t, f, "compression=zstd")
	// The path's NAR, then 64 MiB of zeros: a small object that decodes
	// to a valid NAR and far more.
	dec, _ := zstd.NewReader(nil)
	narBytes, err := dec.DecodeAll(mustRead(t, filepath.Join(dir2, ni.URL)), nil)
	if err != nil {
		t.Fatal(err)
	}
	zeros, _ := zstd.NewWriter(nil)
	bomb := zeros.EncodeAll(append(narBytes, make([]byte, 64<<20)...), nil)
	if err := os.WriteFile(filepath.Join(dir2, ni.URL), bomb, 0o644); err != nil {
		t.Fatal(err)
	}
	editNarinfo(t, dir2, hash, func(ni *narinfo.NarInfo) { ni.FileHash, ni.FileSize = nil, 0 })
	var rs []IndexResult
	c2.IndexAll(context.Background(), []string{hash}, IndexOptions{Key: f.key, TempDir: t.TempDir()}, func(r IndexResult) { rs = append(rs, r) })
	if len(rs) != 1 || !errors.Is(rs[0].Err, errTooLong) {
		t.Errorf("index of a bomb: %+v, want the NAR cut at NarSize", rs)
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fileHashes maps every file of dir to its contents.
func fileHashes(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			rel, _ := filepath.Rel(dir, p)
			m[rel] = string(mustRead(t, p))
		}
		return err
	})
	return m
}
