package remote

import (
	"context"
	"crypto/sha256"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/narfs/narfs/remote/internal/tune"
	"github.com/narfs/narfs/remote/internal/workq"
	"github.com/narfs/narfs/remote/storepath"
)

// waitIdle waits until the store's lookahead has nothing queued or running.
func waitIdle(t *testing.T, q *workq.Queue) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !q.Idle(); {
		if time.Now().After(deadline) {
			t.Fatal("background work still running after 30s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Resolving the app of the fixture cache looks up its reference's narinfo
// and .ls in the background: resolving and listing the reference after
// that asks the cache nothing. Off, only what was asked for is fetched.
func TestLookaheadFixture(t *testing.T) {
	for _, off := range []bool{false, true} {
		cfg := trustedConfig(t)
		cfg.NoReferenceLookahead = off
		s := openStore(t, fixtureDir+"/cache-zstd", "", cfg)
		mustResolve(t, s, pathApp)
		waitIdle(t, s.caches[0].ahead.lookq)
		st := s.Stats()
		if off {
			if st.NarinfoGets != 1 || st.ListingGets != 0 {
				t.Errorf("lookahead off: %d narinfo and %d .ls GETs, want 1 and 0", st.NarinfoGets, st.ListingGets)
			}
			continue
		}
		if st.NarinfoGets != 2 || st.ListingGets != 1 || st.NarGets != 0 {
			t.Errorf("after resolving the app: %+v, want 2 narinfo GETs, 1 .ls, no NAR", st)
		}
		lib := mustResolve(t, s, pathLib)
		if _, err := s.listing(context.Background(), lib); err != nil {
			t.Fatal(err)
		}
		if after := s.Stats(); after.Upstream != st.Upstream {
			t.Errorf("resolving and listing the looked-ahead reference asked the cache: %+v → %+v", st, after)
		}
	}
}

// fanoutCache is an http cache whose root references width paths, each
// referencing one more: 1 + 2·width narinfos, served with a delay, with
// the requests counted.
type fanoutCache struct {
	url   string
	root  string // base name
	root2 string // another root with the same references
	mid   []string

	mu       sync.Mutex // protects the fields below
	gets     map[string]int
	inflight int
	maxIn    int
	fail     func(key string) bool // answer 503
}

func newFanoutCache(t *testing.T, width int, delay time.Duration) *fanoutCache {
	t.Helper()
	dir := copyCache(t, "cache-zstd")
	template := readNarinfo(t, dir, hashPart(pathFile))
	fake := func(name string, refs []storepath.StorePath) storepath.StorePath {
		d := sha256.Sum256([]byte(name))
		sp := storepath.StorePath{Hash: storepath.EncodeNix32(d[:20]), Name: name}
		ni := *template
		ni.StorePath, ni.CA, ni.References = sp, "", refs
		resign(t, &ni)
		writeNarinfo(t, dir, &ni)
		return sp
	}
	c := &fanoutCache{gets: map[string]int{}}
	var mids []storepath.StorePath
	for i := range width {
		leaf := fake("leaf-"+itoa(i), nil)
		mid := fake("mid-"+itoa(i), []storepath.StorePath{leaf})
		mids = append(mids, mid)
		c.mid = append(c.mid, mid.String())
	}
	c.root = fake("root", mids).String()
	c.root2 = fake("root2", mids).String()
	files := http.FileServer(http.Dir(dir))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := strings.TrimPrefix(r.URL.Path, "/")
		c.mu.Lock()
		c.gets[key]++
		c.inflight++
		c.maxIn = max(c.maxIn, c.inflight)
		fail := c.fail != nil && c.fail(key)
		c.mu.Unlock()
		defer func() {
			c.mu.Lock()
			c.inflight--
			c.mu.Unlock()
		}()
		if key != "nix-cache-info" {
			time.Sleep(delay)
		}
		if fail {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		files.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	c.url = srv.URL
	return c
}

func (c *fanoutCache) open(t *testing.T, query string) *Core {
	t.Helper()
	u := c.url
	if query != "" {
		u += "?" + query
	}
	s, err := openOne(context.Background(), u, trustedConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func (c *fanoutCache) requests() (total, narinfos, maxIn int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, n := range c.gets {
		total += n
		if strings.HasSuffix(k, ".narinfo") {
			narinfos += n
		}
	}
	return total, narinfos, c.maxIn
}

// One Resolve of a root with 64 references, each with one of its own,
// looks up all 129 narinfos, each once, 16 at a time, and much faster than
// one after another; another root with the same references adds only its
// own lookup.
func TestLookaheadFanOut(t *testing.T) {
	const width, delay = 64, 20 * time.Millisecond
	c := newFanoutCache(t, width, delay)
	s := c.open(t, "")
	start := time.Now()
	mustResolve(t, s, c.root)
	waitIdle(t, s.caches[0].ahead.lookq)
	took := time.Since(start)
	_, narinfos, maxIn := c.requests()
	t.Logf("took %v, max in flight %d", took, maxIn)
	if narinfos != 1+2*width {
		t.Errorf("%d narinfo requests, want %d", narinfos, 1+2*width)
	}
	if maxIn > tune.LookaheadJobs || maxIn < tune.LookaheadJobs/2 {
		t.Errorf("at most %d requests in flight, want up to %d and parallel", maxIn, tune.LookaheadJobs)
	}
	// Serially: 129 narinfos + 128 .ls misses, 20 ms each.
	if serial := time.Duration(2*(1+2*width)) * delay; took > serial/3 {
		t.Errorf("lookahead took %v; one at a time would take %v", took, serial)
	}
	st := s.Stats()
	for _, m := range c.mid {
		mustResolve(t, s, m)
	}
	mustResolve(t, s, c.root2)
	waitIdle(t, s.caches[0].ahead.lookq)
	if after := s.Stats(); after.NarinfoGets != st.NarinfoGets+1 {
		t.Errorf("resolving looked-ahead paths and a second root: %d more narinfo GETs, want 1", after.NarinfoGets-st.NarinfoGets)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, n := range c.gets {
		if n != 1 {
			t.Errorf("%s requested %d times", k, n)
		}
	}
}

// Close drops queued lookups and ends those in flight: nothing reaches the
// cache after it returns.
func TestLookaheadStopsAtClose(t *testing.T) {
	c := newFanoutCache(t, 64, 50*time.Millisecond)
	s := c.open(t, "")
	mustResolve(t, s, c.root)
	time.Sleep(60 * time.Millisecond) // the first lookups are in flight
	start := time.Now()
	s.Close()
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Close took %v", took)
	}
	// Counted where they are made: one sent just before Close may reach
	// the server just after.
	st := s.Stats()
	time.Sleep(300 * time.Millisecond)
	if after := s.Stats(); !reflect.DeepEqual(after, st) {
		t.Errorf("requests after Close: %+v → %+v", st, after)
	}
	if before, _, _ := c.requests(); before > 1+2+2*tune.LookaheadJobs+tune.LookaheadJobs {
		t.Errorf("%d requests before Close: the queue was not dropped", before)
	}
}

// A cache that fails lookups (503) pauses the lookahead: the first batch
// fails, the rest of the queue is not sent.
func TestLookaheadPausesWhileCacheFails(t *testing.T) {
	c := newFanoutCache(t, 64, 5*time.Millisecond)
	root := c.root
	c.mu.Lock()
	c.fail = func(key string) bool { return key != "nix-cache-info" && key != hashPart(root)+".narinfo" }
	c.mu.Unlock()
	s := c.open(t, "retry-attempts=1")
	mustResolve(t, s, root)
	waitIdle(t, s.caches[0].ahead.lookq)
	_, narinfos, _ := c.requests()
	if narinfos > 1+2*tune.LookaheadJobs {
		t.Errorf("%d narinfo requests to a failing cache, want at most the first batch (%d)", narinfos, 1+tune.LookaheadJobs)
	}
	// The paths are not remembered as missing: a reader still gets them
	// once the cache is back.
	c.mu.Lock()
	c.fail = nil
	c.mu.Unlock()
	mustResolve(t, s, c.mid[len(c.mid)-1])
}

// LookAhead of a resolved indexed path fetches and verifies its index in
// the background: listing it after that asks the cache nothing. Off
// (NoReferenceLookahead), nothing is fetched ahead.
func TestLookAheadOfAPath(t *testing.T) {
	c := makeIndexedCache(t, pathTree, "zstd")
	for _, off := range []bool{false, true} {
		cfg := trustedConfig(t)
		cfg.NoReferenceLookahead = off
		s := openStore(t, c.dir, "", cfg)
		p := mustResolve(t, s, pathTree)
		before := s.Stats()
		s.LookAhead(p)
		waitIdle(t, s.caches[0].ahead.lookq)
		st := s.Stats()
		if off {
			if st.Upstream != before.Upstream {
				t.Errorf("lookahead off: LookAhead asked the cache: %+v → %+v", before, st)
			}
			continue
		}
		if st.IndexGets == before.IndexGets && before.IndexGets == 0 {
			t.Fatalf("LookAhead fetched no index: %+v", st)
		}
		if _, err := s.Lookup(context.Background(), p, ""); err != nil {
			t.Fatal(err)
		}
		if after := s.Stats(); after.Upstream != st.Upstream {
			t.Errorf("listing a looked-ahead path asked the cache: %+v → %+v", st, after)
		}
	}
}

// A reader's lookup that comes while a lookahead's listing request is in
// flight waits for that request instead of making its own.
func TestLookupJoinsLookAhead(t *testing.T) {
	release := make(chan struct{})
	var lsGets atomic.Int64
	files := http.FileServer(http.Dir(fixtureDir + "/cache-zstd"))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, ".ls") {
			lsGets.Add(1)
			<-release
		}
		files.ServeHTTP(w, r)
	}))
	defer srv.Close()
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	defer free()
	s, err := openOne(context.Background(), srv.URL, trustedConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p := mustResolve(t, s, pathLib)
	s.LookAhead(p)
	for deadline := time.Now().Add(10 * time.Second); lsGets.Load() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no .ls request from the lookahead")
		}
	}
	done := make(chan error, 1)
	go func() {
		_, err := s.Lookup(context.Background(), p, "")
		done <- err
	}()
	time.Sleep(100 * time.Millisecond) // the lookup is waiting by now
	free()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := lsGets.Load(); n != 1 {
		t.Errorf("%d .ls requests, want the lookahead's only", n)
	}
}
