package integration

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// faultyCache serves a cache directory and misbehaves on NAR requests
// according to mode: "stall" sends half the body then goes silent, "die"
// cuts the connection mid-body, "500" answers server errors, "" serves.
type faultyCache struct {
	URL  string
	mode atomic.Value
	nars atomic.Int64
}

func serveFaulty(t *testing.T, dir string) *faultyCache {
	f := &faultyCache{}
	f.mode.Store("")
	files := http.FileServer(http.Dir(dir))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/nar/") {
			files.ServeHTTP(w, r)
			return
		}
		f.nars.Add(1)
		data, err := os.ReadFile(filepath.Join(dir, r.URL.Path))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		switch f.mode.Load().(string) {
		case "stall":
			w.Header().Set("Content-Length", strconv.Itoa(len(data)))
			w.Write(data[:len(data)/2])
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
			case <-time.After(20 * time.Second):
			}
		case "die":
			w.Header().Set("Content-Length", strconv.Itoa(len(data)))
			w.Write(data[:len(data)/2])
			w.(http.Flusher).Flush()
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
		case "500":
			http.Error(w, "boom", http.StatusInternalServerError)
		default:
			w.Write(data)
		}
	}))
	t.Cleanup(srv.Close)
	f.URL = srv.URL
	return f
}

// TestMountServerFaults: a cache that stalls, dies mid-NAR or fails gives
// the reader EIO within the configured timeout (never a hang, never partial
// bytes), the daemon keeps serving, and once the server heals the same
// file reads correctly.
func TestMountServerFaults(t *testing.T) {
	c := nixClosure(t)
	f := serveFaulty(t, c.caches["none"])
	m := mountNarfs(t, f.URL, nil, "--trusted-public-keys", c.publicKey, "--timeout", "1s")
	readme := filepath.Join(m.Dir, c.iaPaths[2], "share/doc/README")
	if _, err := os.Stat(readme); err != nil {
		t.Fatalf("metadata from the .ls: %v", err)
	}
	for _, mode := range []string{"stall", "die", "500"} {
		f.mode.Store(mode)
		start := time.Now()
		data, err := os.ReadFile(readme)
		if !errors.Is(err, syscall.EIO) {
			t.Errorf("%s: want EIO, got %v and %q", mode, err, data)
		}
		// Generous ceiling: timeout 1s per attempt, a few attempts with backoff.
		if d := time.Since(start); d > 60*time.Second {
			t.Errorf("%s: the reader waited %v", mode, d)
		}
	}
	f.mode.Store("")
	data, err := os.ReadFile(readme)
	if err != nil || string(data) != "narfs integration\n" {
		t.Errorf("after the server healed: %v %q", err, data)
	}
	if strings.Contains(m.Log(), "failed verification") {
		t.Errorf("a network failure was reported as a verification failure:\n%s", m.Log())
	}
}
