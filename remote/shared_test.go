package remote

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A reader that gives up (Ctrl-C, FUSE interrupt) stops waiting at once;
// the fetch it started goes on and serves the next caller without a
// second download.
func TestCallerStopsWaitingFetchGoesOn(t *testing.T) {
	gate := make(chan struct{})
	files := http.FileServer(http.Dir(filepath.Join(fixtureDir, "cache-zstd")))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/nar/") {
			<-gate
		}
		files.ServeHTTP(w, r)
	}))
	defer srv.Close()
	cfg := trustedConfig(t)
	cfg.CacheDir = t.TempDir()
	s, err := openOne(context.Background(), srv.URL, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p := mustResolve(t, s, pathTreeSmall)

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := s.materialize(ctx, p); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a caller whose context ended: %v, want DeadlineExceeded", err)
	}
	close(gate)
	if _, err := s.materialize(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.NarGets != 1 || st.Fetches != 1 {
		t.Errorf("NarGets %d Fetches %d, want 1 and 1", st.NarGets, st.Fetches)
	}
}
