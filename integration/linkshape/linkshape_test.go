package linkshape

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const blobSize = 9_000_000

var blob = func() []byte {
	b := make([]byte, blobSize)
	for i := range b {
		b[i] = byte(i*7 + i>>13)
	}
	return b
}()

// upstream serves /blob (blob, with Range and HEAD through ServeContent),
// /blob?n=N (its first N bytes), /slow (a body that never ends until the
// client goes) and PUT /put (answers how many body bytes it read).
func upstream(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/blob":
			data := blob
			if n := r.URL.Query().Get("n"); n != "" {
				i, _ := strconv.Atoi(n)
				data = blob[:i]
			}
			http.ServeContent(w, r, "blob", time.Time{}, bytes.NewReader(data))
		case "/slow":
			w.Header().Set("Content-Length", strconv.Itoa(blobSize))
			buf := make([]byte, 1024)
			for {
				if _, err := w.Write(buf); err != nil {
					return
				}
				w.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
					return
				case <-time.After(time.Millisecond):
				}
			}
		case "/put":
			n, err := io.Copy(io.Discard, r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			fmt.Fprint(w, n)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func start(t *testing.T, up string, p Profile) *Proxy {
	t.Helper()
	px, err := Start(up, p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { px.Close() })
	return px
}

func client(t *testing.T) *http.Client {
	tr := &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 16}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// get fetches url and its whole body, and says how long that took.
func get(t *testing.T, c *http.Client, url string) ([]byte, time.Duration) {
	t.Helper()
	t0 := time.Now()
	resp, err := c.Get(url)
	if err != nil {
		t.Error(err)
		return nil, 0
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	d := time.Since(t0)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("GET %s: %s, %v", url, resp.Status, err)
	}
	return b, d
}

// ideal is how long n bytes take at rate once the initial burst is spent.
func ideal(n int, rate int64) time.Duration {
	return time.Duration(float64(n-burst) / float64(rate) * float64(time.Second))
}

func TestTTFB(t *testing.T) {
	up := upstream(t)
	p := Profile{Name: "t", TTFB: 50 * time.Millisecond}
	px := start(t, up.URL, p)
	c := client(t)
	for range 2 { // the second one on a kept-alive connection
		t0 := time.Now()
		resp, err := c.Get(px.URL() + "/blob?n=10")
		if err != nil {
			t.Fatal(err)
		}
		if d := time.Since(t0); d < p.TTFB {
			t.Errorf("headers after %v, want ≥ TTFB %v", d, p.TTFB)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !bytes.Equal(b, blob[:10]) {
			t.Errorf("body %x, want %x", b, blob[:10])
		}
	}
	if n, sent := px.Stats(); n != 2 || sent != 20 {
		t.Errorf("Stats = %d requests, %d bytes; want 2, 20", n, sent)
	}
}

func TestRate(t *testing.T) {
	up := upstream(t)
	px := start(t, up.URL, S3Region)
	c := client(t)
	b, d := get(t, c, px.URL()+"/blob")
	if !bytes.Equal(b, blob) {
		t.Fatalf("body differs (%d bytes, want %d)", len(b), len(blob))
	}
	low := S3Region.TTFB + ideal(blobSize, S3Region.Rate)*8/10
	t.Logf("9 MB through %v in %v (ideal %v)", S3Region, d, S3Region.TTFB+ideal(blobSize, S3Region.Rate))
	if d < low {
		t.Errorf("9 MB at 90 MB/s took %v, want ≥ %v", d, low)
	}
	if n, sent := px.Stats(); n != 1 || sent != blobSize {
		t.Errorf("Stats = %d requests, %d bytes; want 1, %d", n, sent, blobSize)
	}
}

// parallel GETs k copies of the first n bytes of blob at once and says how
// long the slowest took.
func parallel(t *testing.T, c *http.Client, url string, k int) time.Duration {
	t.Helper()
	var wg sync.WaitGroup
	t0 := time.Now()
	for range k {
		wg.Go(func() { get(t, c, url) })
	}
	wg.Wait()
	return time.Since(t0)
}

func TestParallelRequestsEachGetTheRate(t *testing.T) {
	const n = 1_000_000
	p := Profile{Name: "t", Rate: 10e6}
	up := upstream(t)
	px := start(t, up.URL, p)
	c := client(t)
	url := px.URL() + "/blob?n=" + strconv.Itoa(n)
	one := parallel(t, c, url, 1)
	four := parallel(t, c, url, 4)
	t.Logf("1 MB at 10 MB/s: one %v, four in parallel %v (ideal %v)", one, four, ideal(n, p.Rate))
	if low := ideal(n, p.Rate) * 8 / 10; one < low || four < low {
		t.Errorf("one %v, four %v; want each ≥ %v", one, four, low)
	}
	if four >= 3*one {
		t.Errorf("4 parallel took %v, one %v: want < 3× (each request its own rate)", four, one)
	}
}

func TestTotalCapsParallelRequests(t *testing.T) {
	const n = 500_000
	p := Profile{Name: "t", Rate: 10e6, Total: 10e6}
	up := upstream(t)
	px := start(t, up.URL, p)
	c := client(t)
	four := parallel(t, c, px.URL()+"/blob?n="+strconv.Itoa(n), 4)
	// The four share one 10 MB/s: 2 MB minus one shared burst.
	low := ideal(4*n, p.Total) * 8 / 10
	t.Logf("4×0.5 MB at 10 MB/s each, 10 MB/s total: %v (ideal %v)", four, ideal(4*n, p.Total))
	if four < low {
		t.Errorf("4 parallel took %v, want ≥ %v under the Total cap", four, low)
	}
}

func TestRangeAndHead(t *testing.T) {
	up := upstream(t)
	px := start(t, up.URL, Profile{Name: "t", TTFB: time.Millisecond, Rate: 90e6})
	c := client(t)

	req, _ := http.NewRequest("GET", px.URL()+"/blob", nil)
	req.Header.Set("Range", "bytes=100-199")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusPartialContent {
		t.Errorf("range: %s, want 206", resp.Status)
	}
	if cr, want := resp.Header.Get("Content-Range"), fmt.Sprintf("bytes 100-199/%d", blobSize); cr != want {
		t.Errorf("Content-Range %q, want %q", cr, want)
	}
	if !bytes.Equal(b, blob[100:200]) {
		t.Errorf("range body differs")
	}

	resp, err = c.Head(px.URL() + "/blob")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(b) != 0 || resp.ContentLength != blobSize {
		t.Errorf("HEAD: %s, Content-Length %d, %d body bytes; want 200, %d, 0", resp.Status, resp.ContentLength, len(b), blobSize)
	}

	resp, err = c.Get(px.URL() + "/nope?x=1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /nope: %s, want 404 handed on", resp.Status)
	}
	if n, sent := px.Stats(); n != 3 || sent < 100 {
		t.Errorf("Stats = %d requests, %d bytes; want 3, ≥ 100", n, sent)
	}
}

func TestPutBodyIsPaced(t *testing.T) {
	const n = 2_000_000
	p := Profile{Name: "t", Rate: 20e6}
	up := upstream(t)
	px := start(t, up.URL, p)
	c := client(t)
	t0 := time.Now()
	req, _ := http.NewRequest("PUT", px.URL()+"/put", bytes.NewReader(blob[:n]))
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	d := time.Since(t0)
	if string(b) != strconv.Itoa(n) {
		t.Errorf("upstream read %q bytes, want %d", b, n)
	}
	if low := ideal(n, p.Rate) * 8 / 10; d < low {
		t.Errorf("PUT of 2 MB at 20 MB/s took %v, want ≥ %v", d, low)
	}
	if got := px.BytesReceived(); got != n {
		t.Errorf("BytesReceived = %d, want %d", got, n)
	}
}

// noProxyGoroutines waits up to 5 s for every goroutine of the proxy (its
// Serve loop, handlers, pacing) to be gone.
func noProxyGoroutines(t *testing.T) {
	t.Helper()
	var stacks string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		buf := make([]byte, 1<<20)
		stacks = string(buf[:runtime.Stack(buf, true)])
		var left []string
		for g := range strings.SplitSeq(stacks, "\n\n") {
			if strings.Contains(g, "linkshape.Start") || strings.Contains(g, "linkshape.(*") ||
				strings.Contains(g, "linkshape.sleep") || strings.Contains(g, "net/http/httputil.") {
				left = append(left, g)
			}
		}
		if len(left) == 0 {
			return
		}
		stacks = strings.Join(left, "\n\n")
	}
	t.Errorf("proxy goroutines left after Close:\n%s", stacks)
}

func TestCloseAbortsInFlight(t *testing.T) {
	up := upstream(t)
	for _, tc := range []struct {
		name, path string
		p          Profile
	}{
		{"slow body", "/blob", Profile{Name: "t", Rate: 100e3}},
		{"endless upstream", "/slow", Profile{Name: "t", Rate: 1e6}},
		{"in TTFB", "/blob", Profile{Name: "t", TTFB: time.Hour}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			px, err := Start(up.URL, tc.p)
			if err != nil {
				t.Fatal(err)
			}
			c := client(t)
			errc := make(chan error, 1)
			started := make(chan struct{})
			go func() {
				resp, err := c.Get(px.URL() + tc.path)
				if err != nil {
					close(started)
					errc <- err
					return
				}
				if resp.StatusCode != http.StatusOK {
					t.Errorf("status %s, want 200 or no answer", resp.Status)
				}
				defer resp.Body.Close()
				if _, err := io.ReadFull(resp.Body, make([]byte, 1000)); err != nil {
					close(started)
					errc <- fmt.Errorf("first bytes: %v", err)
					return
				}
				close(started)
				_, err = io.Copy(io.Discard, resp.Body)
				errc <- err
			}()
			if tc.p.TTFB > 0 {
				// Wait until the request is held in its TTFB.
				for n, _ := px.Stats(); n == 0; n, _ = px.Stats() {
					time.Sleep(time.Millisecond)
				}
				time.Sleep(20 * time.Millisecond)
			} else {
				<-started
			}
			t0 := time.Now()
			if err := px.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			if d := time.Since(t0); d > 2*time.Second {
				t.Errorf("Close took %v", d)
			}
			select {
			case err := <-errc:
				if err == nil {
					t.Error("client saw a complete body; want an error")
				} else {
					t.Logf("client: %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("client still reading 5 s after Close")
			}
			if err := px.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
			c.Transport.(*http.Transport).CloseIdleConnections()
			noProxyGoroutines(t)
		})
	}
}

func TestStartErrors(t *testing.T) {
	for _, up := range []string{"", "127.0.0.1:1", "ftp://x", "http://", "http://%zz"} {
		if px, err := Start(up, Loopback); err == nil {
			px.Close()
			t.Errorf("Start(%q) = nil error", up)
		}
	}
	if px, err := Start("http://127.0.0.1:1", Profile{Rate: -1}); err == nil {
		px.Close()
		t.Error("Start with a negative rate = nil error")
	}
}

func TestParseProfile(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Profile
	}{
		{"loopback", Loopback},
		{"s3-region", S3Region},
		{"S3-Region", S3Region},
		{" wan ", WAN},
		{"ttfb=20ms,rate=90MB", Profile{Name: "ttfb=20ms,rate=90MB", TTFB: 20 * time.Millisecond, Rate: 90e6}},
		{"rate=90MB/s, ttfb=20ms", Profile{Name: "rate=90MB/s, ttfb=20ms", TTFB: 20 * time.Millisecond, Rate: 90e6}},
		{"ttfb=1.5s", Profile{Name: "ttfb=1.5s", TTFB: 1500 * time.Millisecond}},
		{"rate=64KiB/s", Profile{Name: "rate=64KiB/s", Rate: 64 << 10}},
		{"rate=1.5GB,total=2GiB", Profile{Name: "rate=1.5GB,total=2GiB", Rate: 1.5e9, Total: 2 << 30}},
		{"rate=1000", Profile{Name: "rate=1000", Rate: 1000}},
		{"rate=12 kb", Profile{Name: "rate=12 kb", Rate: 12e3}},
		{"rate=0", Profile{Name: "rate=0"}},
		{"s3-region,total=200MB", Profile{Name: "s3-region,total=200MB", TTFB: 20 * time.Millisecond, Rate: 90e6, Total: 200e6}},
		{"wan,ttfb=100ms", Profile{Name: "wan,ttfb=100ms", TTFB: 100 * time.Millisecond, Rate: 25e6}},
	} {
		got, err := ParseProfile(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseProfile(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{
		"", "lan", "ttfb=20", "ttfb=-1ms", "rate=90M", "rate=90Mbit", "rate=-1MB", "rate=fast",
		"rate=inf", "rate=NaN", "rate=0.5", "rate=1e30GB", "speed=1MB", "ttfb=1ms,wan", "rate",
	} {
		if p, err := ParseProfile(in); err == nil {
			t.Errorf("ParseProfile(%q) = %+v, want an error", in, p)
		}
	}
	if s := S3Region.String(); s != "s3-region(ttfb=20ms,rate=90MB/s)" {
		t.Errorf("S3Region.String() = %q", s)
	}
	if s := (Profile{Name: "x", Rate: 1234, Total: 5e3}).String(); s != "x(ttfb=0s,rate=1234B/s,total=5KB/s)" {
		t.Errorf("String() = %q", s)
	}
}
