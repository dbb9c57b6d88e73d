package remote

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"sync"
	"testing"
)

const goroutines = 32

// together runs fn in goroutines that start at the same moment.
func together(n int, fn func(i int)) {
	var start, done sync.WaitGroup
	start.Add(1)
	for i := range n {
		done.Add(1)
		go func() {
			defer done.Done()
			start.Wait()
			fn(i)
		}()
	}
	start.Done()
	done.Wait()
}

func TestConcurrentMaterializeAndOpen(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, filepath.Join(fixtureDir, "cache-xz"), "", trustedConfig(t))
	p := mustResolve(t, s, pathTreeSmall)
	nd := narBytes(t, pathTreeSmall)
	want := buildListing(t, nd)
	sub, node := firstFile(want)
	wantBytes := string(nd[node.NarOffset : node.NarOffset+node.Size])

	errs := make([]error, goroutines)
	got := make([]string, goroutines)
	together(goroutines, func(i int) {
		if i%2 == 0 {
			_, err := s.materialize(ctx, p)
			errs[i] = err
			if err == nil {
				checkStored(t, s, p, want.Root, nd, pathTreeSmall)
			}
			return
		}
		f, err := s.openFile(ctx, p, sub)
		if err != nil {
			errs[i] = err
			return
		}
		defer f.Close()
		b, err := io.ReadAll(f.Reader())
		errs[i], got[i] = err, string(b)
	})
	for i, err := range errs {
		if err != nil {
			t.Errorf("goroutine %d: %v", i, err)
		} else if i%2 == 1 && got[i] != wantBytes {
			t.Errorf("goroutine %d read %d wrong bytes", i, len(got[i]))
		}
	}
	if st := s.Stats(); st.NarGets != 1 || st.Fetches != 1 {
		t.Errorf("Stats %+v, want one NAR GET and one fetch for %d readers", st, goroutines)
	}
}

func TestConcurrentCorrupt(t *testing.T) {
	ctx := context.Background()
	dir, narPath, data := corruptNoneCache(t, pathLib)
	data[len(data)/2] ^= 1
	putFile(t, narPath, data)
	s := openStore(t, dir, "", trustedConfig(t))
	p := mustResolve(t, s, pathLib)
	together(goroutines, func(int) {
		if _, err := s.openFile(ctx, p, "lib/libnarfs.so"); !errors.Is(err, ErrCorrupt) {
			t.Errorf("OpenFile = %v, want ErrCorrupt", err)
		}
	})
	if st := s.Stats(); st.NarGets != 1 || st.Corrupt != 1 {
		t.Errorf("Stats %+v, want one NAR GET and one corrupt verdict", st)
	}
	assertNothingKept(t, s)
}

func TestConcurrentResolve(t *testing.T) {
	ctx := context.Background()
	for name, tc := range map[string]struct {
		base    string
		wantErr error
	}{
		"present": {pathLib, nil},
		"missing": {"00000000000000000000000000000000-missing", ErrNotFound},
	} {
		t.Run(name, func(t *testing.T) {
			s := openStore(t, filepath.Join(fixtureDir, "cache-none"), "", trustedConfig(t))
			together(goroutines, func(int) {
				p, err := s.Resolve(ctx, tc.base)
				if !errors.Is(err, tc.wantErr) {
					t.Errorf("Resolve = %v, want %v", err, tc.wantErr)
				}
				if err == nil && p.Path.String() != tc.base {
					t.Errorf("Resolve = %s", p.Path)
				}
			})
			if got := s.Stats().NarinfoGets; got != 1 {
				t.Errorf("NarinfoGets = %d for %d concurrent lookups, want 1", got, goroutines)
			}
		})
	}
}

func TestConcurrentListing(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, filepath.Join(fixtureDir, "cache-gzip"), "", trustedConfig(t))
	p := mustResolve(t, s, pathTree)
	together(goroutines, func(int) {
		if _, err := s.listing(ctx, p); err != nil {
			t.Error(err)
		}
	})
	if st := s.Stats(); st.ListingGets != 1 || st.NarGets != 0 {
		t.Errorf("Stats %+v, want one .ls GET", st)
	}
}

func TestConcurrentCallerGivesUp(t *testing.T) {
	// A caller whose context is already cancelled does not spoil the fetch
	// for the others.
	s := openStore(t, filepath.Join(fixtureDir, "cache-bzip2"), "", trustedConfig(t))
	p := mustResolve(t, s, pathTreeSmall)
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	together(goroutines, func(i int) {
		ctx := context.Background()
		if i == 0 {
			ctx = cancelled
		}
		if _, err := s.materialize(ctx, p); err != nil && i != 0 {
			t.Errorf("goroutine %d: %v", i, err)
		}
	})
	if _, err := s.materialize(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Fetches != 1 {
		t.Errorf("Stats %+v, want one fetch", st)
	}
}
