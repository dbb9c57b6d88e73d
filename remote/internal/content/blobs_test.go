package content

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
)

func TestSmallReadaheadGrowsOnNearbyReads(t *testing.T) {
	r := &Blob{lastSmall: -1}
	var got []int
	for _, c := range []int{10, 11, 12, 14, 18, 26, 27, 100, 101} {
		got = append(got, r.smallReadahead(c))
	}
	want := []int{1, 2, 4, 8, 8, 8, 8, 1, 2}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("readahead %v, want %v", got, want)
	}
}

type testSource struct {
	body string
	err  error
	n    int
}

func (s *testSource) GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	s.n++
	if s.err != nil {
		return nil, s.err
	}
	return io.NopCloser(strings.NewReader(s.body)), nil
}

// A blob shared by the openers of two caches fetches from the first; when
// that fails, from the other's, and stays there. Its chunk counts go to
// the cache that answers.
func TestBlobSourceMovesToAnotherOpenersCache(t *testing.T) {
	down := &testSource{err: errors.New("connection refused")}
	up := &testSource{body: "chunks"}
	var ca, cb testCounters
	a := &Origin{ID: "a", Source: down, Counters: &ca, Log: slog.New(slog.DiscardHandler)}
	b := &Origin{ID: "b", Source: up, Counters: &cb, Log: slog.New(slog.DiscardHandler)}
	src := &source{cur: a, latest: a}
	if _, err := src.GetRange(context.Background(), "nar/x", 0, 6); err == nil {
		t.Fatal("the only opener's cache is down: no error")
	}
	src.offer(b)
	for i := range 2 {
		rc, err := src.GetRange(context.Background(), "nar/x", 0, 6)
		if err != nil {
			t.Fatalf("request %d with a second opener whose cache answers: %v", i, err)
		}
		rc.Close()
	}
	if down.n != 2 || up.n != 2 || src.current() != b {
		t.Errorf("requests: down %d, up %d (want 2, 2); current %s", down.n, up.n, src.current().ID)
	}
	// A caller's own context ending moves nothing.
	src2 := &source{cur: a, latest: b}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := src2.GetRange(ctx, "nar/x", 0, 6); err == nil || src2.current() != a {
		t.Errorf("a cancelled request moved the blob's source (err %v)", err)
	}
}
