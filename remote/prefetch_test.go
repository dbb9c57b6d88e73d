package remote

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"
)

// With PrefetchReferences, reading one path fetches its references in the
// background; without it, nothing else is fetched.
func TestPrefetchReferences(t *testing.T) {
	dir := copyCache(t, "cache-zstd")
	var app string
	for _, p := range fixturePaths(t) {
		if len(p.base) > 33 && p.base[33:] == "narfs-test-app" {
			app = p.base
		}
	}
	if app == "" {
		t.Fatal("no narfs-test-app fixture")
	}
	for _, prefetch := range []bool{false, true} {
		cfg := trustedConfig(t)
		cfg.PrefetchReferences = prefetch
		s := openStore(t, dir, "", cfg)
		p := mustResolve(t, s, app)
		if _, err := s.materialize(context.Background(), p); err != nil {
			t.Fatal(err)
		}
		want := int64(1)
		if prefetch {
			want = int64(1 + len(p.NarInfo.References))
			for _, r := range p.NarInfo.References {
				if r == p.Path {
					want--
				}
			}
			// Background work: wait for it, bounded.
			for deadline := time.Now().Add(30 * time.Second); s.Stats().Fetches < want && time.Now().Before(deadline); {
				time.Sleep(10 * time.Millisecond)
			}
		}
		if got := s.Stats().Fetches; got != want {
			t.Errorf("prefetch=%v: %d NARs fetched, want %d", prefetch, got, want)
		}
	}
}

// Prefetch of every fixture path fills the cache dir so that another
// Store on it opens every file with no NAR request.
func TestPrefetchWholeNARs(t *testing.T) {
	cfg := trustedConfig(t)
	s := openStore(t, fixtureDir+"/cache-xz", "", cfg)
	var infos []*PathInfo
	for _, fp := range fixturePaths(t) {
		p := mustResolve(t, s, fp.base)
		indexed, err := s.Prefetch(context.Background(), p)
		if err != nil || indexed {
			t.Fatalf("Prefetch %s: indexed %v, %v", fp.base, indexed, err)
		}
		infos = append(infos, p)
	}
	if got := s.Stats().Fetches; got != int64(len(infos)) {
		t.Errorf("%d NARs fetched, want %d", got, len(infos))
	}
	s2 := openStore(t, fixtureDir+"/cache-xz", "", cfg) // same CacheDir
	for _, p := range infos {
		l, err := s2.VerifiedListing(context.Background(), p)
		if err != nil {
			t.Fatal(err)
		}
		for sub := range filesOf(l) {
			f, err := s2.openFile(context.Background(), p, sub)
			if err != nil {
				t.Fatalf("%s/%s: %v", p.Path, sub, err)
			}
			f.Close()
		}
	}
	if st := s2.Stats(); st.NarGets != 0 || st.Fetches != 0 {
		t.Errorf("reads after the prefetch: %+v, want no NAR request", st)
	}
}

// Prefetch of an indexed path fills its blob with every chunk and gives
// its large file a file of its own: another Store on the cache dir reads
// every byte with no request for NAR bytes.
func TestPrefetchIndexed(t *testing.T) {
	c := makeIndexedCache(t, pathTree, "zstd")
	cfg := trustedConfig(t)
	s := openStore(t, c.dir, "", cfg)
	p := mustResolve(t, s, pathTree)
	indexed, err := s.Prefetch(context.Background(), p)
	if err != nil || !indexed {
		t.Fatalf("Prefetch: indexed %v, %v", indexed, err)
	}
	if st := s.Stats(); st.ChunkBytes != int64(len(c.object)) {
		t.Errorf("prefetch requested %d stored bytes, want the object's %d", st.ChunkBytes, len(c.object))
	}
	// Again: nothing left to fetch.
	before := s.Stats()
	if _, err := s.Prefetch(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	if after := s.Stats(); after.NarGets != before.NarGets {
		t.Errorf("a second prefetch made %d NAR requests", after.NarGets-before.NarGets)
	}
	s.Close()

	s2 := openStore(t, c.dir, "", cfg)
	p = mustResolve(t, s2, pathTree)
	owns := 0
	for sub, n := range filesOf(c.listing) {
		got, err := readChunked(t, s2, p, sub)
		if err != nil {
			t.Fatalf("%s: %v", sub, err)
		}
		if !bytes.Equal(got, contentsOf(c, n)) {
			t.Errorf("%s: wrong contents", sub)
		}
		if n.Size >= MaxRead {
			f, err := s2.openChunked(context.Background(), p, sub)
			if err != nil {
				t.Fatal(err)
			}
			if f.Own() != nil {
				owns++
			}
			f.Close()
		}
	}
	if owns == 0 {
		t.Error("no large file has a file of its own after the prefetch")
	}
	if st := s2.Stats(); st.NarGets != 0 || st.ChunkBytes != 0 {
		t.Errorf("reads after the prefetch: %+v, want no NAR request", st)
	}

	// A path without an index is not PrefetchIndexed's.
	plain := mustResolve(t, s2, pathFile)
	if err := s2.prefetchIndexed(context.Background(), plain); !errors.Is(err, errNotIndexed) {
		t.Errorf("PrefetchIndexed of a plain path: %v, want errNotIndexed", err)
	}
}
