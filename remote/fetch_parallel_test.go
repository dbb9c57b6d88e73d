package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// brokenBody fails with a reset after left bytes.
type brokenBody struct {
	io.ReadCloser
	left int64
}

func (b *brokenBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, errors.New("connection reset by peer (injected)")
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	return n, err
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// breakingCache serves a fixture cache over http whose NAR responses
// each break half-way the first time a range start is asked for.
func breakingCache(t *testing.T, cache string) (url string, client *http.Client, breaks func() int) {
	srv := httptest.NewServer(http.FileServer(http.Dir(filepath.Join(fixtureDir, cache))))
	t.Cleanup(srv.Close)
	var mu sync.Mutex
	seen := map[string]bool{}
	n := 0
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	client = &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		resp, err := tr.RoundTrip(r)
		if err != nil || !strings.HasPrefix(r.URL.Path, "/nar/") || resp.ContentLength < 2 {
			return resp, err
		}
		k := r.URL.Path + " " + r.Header.Get("Range")
		mu.Lock()
		defer mu.Unlock()
		if !seen[k] {
			seen[k] = true
			n++
			resp.Body = &brokenBody{ReadCloser: resp.Body, left: resp.ContentLength / 2}
		}
		return resp, nil
	})}
	return srv.URL, client, func() int { mu.Lock(); defer mu.Unlock(); return n }
}

// TestFetchResumesBrokenParts: every part of a parallel NAR download
// breaks half-way; the parts are resumed and the one fetch verifies.
func TestFetchResumesBrokenParts(t *testing.T) {
	url, client, breaks := breakingCache(t, "cache-none")
	cfg := trustedConfig(t)
	cfg.Backend.HTTPClient = client
	cfg.Backend.RetryBaseDelay = 1
	s, err := openOne(context.Background(), url, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p := mustResolve(t, s, pathTree)
	if p.NarInfo.FileSize <= 4<<20 {
		t.Fatalf("fixture %s is %d bytes; the test needs several parts", pathTree, p.NarInfo.FileSize)
	}
	if _, err := s.materialize(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	if st.NarGets != 1 || st.Fetches != 1 || st.Corrupt != 0 {
		t.Errorf("Stats %+v, want one NAR download, one fetch, nothing corrupt", st)
	}
	if b := breaks(); b < 4 || st.NarParts < 2 {
		t.Errorf("%d bodies broke in %d parts: the test did not exercise resumption", b, st.NarParts)
	}
	if st.NarBytes > p.NarInfo.FileSize {
		t.Errorf("%d NAR bytes received for a %d byte object: resumption refetched", st.NarBytes, p.NarInfo.FileSize)
	}
}

// TestFetchWithoutRanges: a server that ignores Range is found out by the
// first NAR's ranged request, whose whole answer is that NAR (not fetched
// again), and is not asked for ranges again.
func TestFetchWithoutRanges(t *testing.T) {
	dir := filepath.Join(fixtureDir, "cache-none")
	files := http.FileServer(http.Dir(dir))
	var mu sync.Mutex
	var ranged, whole int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/nar/") {
			mu.Lock()
			if r.Header.Get("Range") != "" {
				ranged++
			} else {
				whole++
			}
			mu.Unlock()
			r.Header.Del("Range") // a server without range support
		}
		files.ServeHTTP(w, r)
	}))
	defer srv.Close()
	s, err := openOne(context.Background(), srv.URL, trustedConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, base := range []string{pathTree, pathLib} {
		if _, err := s.materialize(context.Background(), mustResolve(t, s, base)); err != nil {
			t.Fatal(err)
		}
	}
	if st := s.Stats(); st.Fetches != 2 || st.Corrupt != 0 {
		t.Errorf("Stats %+v", st)
	}
	if ranged != 1 || whole != 1 {
		t.Errorf("%d ranged and %d whole NAR requests, want 1 (found out, and its answer used) and 1", ranged, whole)
	}
}

// TestFetchEncodedRanges: a server that adds a Content-Encoding (as
// harmonia does) is read with one GET and decoded.
func TestFetchEncodedRanges(t *testing.T) {
	dir := filepath.Join(fixtureDir, "cache-none")
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/nar/") {
			http.FileServer(http.Dir(dir)).ServeHTTP(w, r)
			return
		}
		raw, err := os.ReadFile(filepath.Join(dir, r.URL.Path))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		data := enc.EncodeAll(raw, nil)
		w.Header().Set("Content-Encoding", "zstd")
		if r.Header.Get("Range") != "" {
			// Encoding each response, ranges become meaningless.
			w.Header().Set("Content-Range", fmt.Sprintf("bytes 0-%d/%d", len(data)-1, len(data)))
			w.WriteHeader(http.StatusPartialContent)
		}
		w.Write(data)
	}))
	defer srv.Close()
	s, err := openOne(context.Background(), srv.URL, trustedConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.materialize(context.Background(), mustResolve(t, s, pathTree)); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Fetches != 1 || st.Corrupt != 0 {
		t.Errorf("Stats %+v", st)
	}
}
