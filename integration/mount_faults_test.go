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
// cuts the connection mid-body, "500" answers server errors, "503" asks
// to retry after 30 s, "trickle" sends a byte every 100 ms, "blackhole"
// never answers, "" serves.
type faultyCache struct {
	URL   string
	close func() // stops the server: connections are refused
	mode  atomic.Value
	nars  atomic.Int64
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
		case "503":
			w.Header().Set("Retry-After", "30")
			http.Error(w, "busy", http.StatusServiceUnavailable)
		case "trickle":
			w.Header().Set("Content-Length", strconv.Itoa(len(data)))
			for i := range data {
				if _, err := w.Write(data[i : i+1]); err != nil {
					return
				}
				w.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
					return
				case <-time.After(100 * time.Millisecond):
				}
			}
		case "blackhole":
			select {
			case <-r.Context().Done():
			case <-time.After(30 * time.Second):
			}
		default:
			w.Write(data)
		}
	}))
	t.Cleanup(srv.Close)
	f.URL, f.close = srv.URL, srv.Close
	return f
}

// TestMountServerFaults: a cache that stalls, trickles, never answers,
// dies mid-NAR or fails gives the reader EIO within the configured
// timeout, retries included (never a hang, never partial bytes), the
// daemon keeps serving, and once the server heals the same file reads
// correctly: a download the server poisoned is abandoned, not joined.
func TestMountServerFaults(t *testing.T) {
	c := nixClosure(t)
	f := serveFaulty(t, c.caches["none"])
	m := mountNarfs(t, f.URL, nil, "--trusted-public-keys", c.publicKey, "--timeout", "1s")
	mounts := []*mounted{m}
	readme := filepath.Join(m.Dir, c.iaPaths[2], "share/doc/README")
	if _, err := os.Stat(readme); err != nil {
		t.Fatalf("metadata from the .ls: %v", err)
	}
	for _, mode := range []string{"stall", "trickle", "blackhole", "die", "500", "503"} {
		f.mode.Store(mode)
		start := time.Now()
		data, err := os.ReadFile(readme)
		if !errors.Is(err, syscall.EIO) {
			t.Errorf("%s: want EIO, got %v and %q", mode, err, data)
		}
		// --timeout 1s is the reader's whole wait; allow scheduling slack.
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("%s: the reader waited %v with --timeout 1s", mode, d)
		}
		f.mode.Store("")
		// The next reader gets the file once the server is healthy again,
		// without waiting for the poisoned download.
		var data2 []byte
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
			if data2, err = os.ReadFile(readme); err == nil {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if err != nil || string(data2) != "narfs integration\n" {
			t.Fatalf("%s: after the server healed: %v %q", mode, err, data2)
		}
		// Forget the verified copy so the next mode fetches again.
		m = mountNarfs(t, f.URL, nil, "--trusted-public-keys", c.publicKey, "--timeout", "1s")
		mounts = append(mounts, m)
		readme = filepath.Join(m.Dir, c.iaPaths[2], "share/doc/README")
	}
	for _, m := range mounts {
		if strings.Contains(m.Log(), "failed verification") {
			t.Errorf("a network failure was reported as a verification failure:\n%s", m.Log())
		}
	}
}
