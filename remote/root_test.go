package remote

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/remote/internal/tune"
)

// Without .ls listings, a lookup needs only the root node: Root reads the
// first bytes of the NAR, not all of it, and fetches (extracts) nothing.
func TestRootWithoutListingPeeks(t *testing.T) {
	dir := copyCache(t, "cache-none")
	ls, _ := filepath.Glob(filepath.Join(dir, "*.ls"))
	for _, f := range ls {
		os.Remove(f)
	}
	s := openStore(t, dir, "", trustedConfig(t))
	ctx := context.Background()
	for _, fp := range fixturePaths(t) {
		p := mustResolve(t, s, fp.base)
		before := s.Stats()
		n, err := s.Root(ctx, p)
		if err != nil {
			t.Fatalf("%s: %v", fp.base, err)
		}
		after := s.Stats()
		if got := after.NarBytes - before.NarBytes; got > tune.RootPeek || got >= p.NarInfo.NarSize && p.NarInfo.NarSize > tune.RootPeek {
			t.Errorf("%s: Root read %d NAR bytes of %d", fp.base, got, p.NarInfo.NarSize)
		}
		// A single symlink is verified first (its NAR is tiny); nothing
		// else is fetched.
		if wantFetches := int64(btoi(fp.base == pathLink)); after.Fetches != wantFetches {
			t.Errorf("%s: Root fetched %d whole NARs, want %d", fp.base, after.Fetches, wantFetches)
		}
		// The truth, from the NAR itself.
		l, err := s.listing(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		want := l.Root
		if n.Type != want.Type || n.Size != want.Size || n.Executable != want.Executable || n.Target != want.Target {
			t.Errorf("%s: Root = %+v, listing root = %+v", fp.base, n, want)
		}
		if n.Type == nar.TypeDirectory && n.Entries != nil {
			t.Errorf("%s: a peeked directory claims to know its entries", fp.base)
		}
		// Start the next path from no extracted state.
		os.RemoveAll(filepath.Join(s.caches[0].cfg.CacheDir, cacheLayout, "nar", narKey(p)))
		s.local.Cache().Forget(narKey(p))
		s.caches[0].listings.Remove(p.Path.Hash)
		s.caches[0].up.Counters().Fetches.Store(0)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// With a .ls, Root reads no NAR bytes at all, but for the path that is a
// single symlink, whose target is verified.
func TestRootFromListing(t *testing.T) {
	s := openStore(t, copyCache(t, "cache-zstd"), "", trustedConfig(t))
	for _, fp := range fixturePaths(t) {
		if _, err := s.Root(context.Background(), mustResolve(t, s, fp.base)); err != nil {
			t.Fatal(err)
		}
	}
	if st := s.Stats(); st.NarGets != 1 {
		t.Errorf("NarGets = %d, want 1 (the symlink's)", st.NarGets)
	}
}

// The core keeps a peeked root: asking Root again (a front end no longer
// keeps its own copy) costs no request, and a directory's entries still
// come from the listing, not from the header.
func TestRootPeekedKept(t *testing.T) {
	dir := copyCache(t, "cache-none")
	ls, _ := filepath.Glob(filepath.Join(dir, "*.ls"))
	for _, f := range ls {
		os.Remove(f)
	}
	s := openStore(t, dir, "", trustedConfig(t))
	ctx := context.Background()
	p := mustResolve(t, s, pathTreeSmall)
	n, err := s.Root(ctx, p)
	if err != nil || n.Type != nar.TypeDirectory {
		t.Fatalf("Root = %+v, %v", n, err)
	}
	before := s.Stats()
	if n2, err := s.Root(ctx, p); err != nil || n2 != n {
		t.Fatalf("second Root = %+v, %v; want the peeked root", n2, err)
	}
	if after := s.Stats(); after.NarGets != before.NarGets || after.UpstreamBytes != before.UpstreamBytes {
		t.Errorf("second Root asked the cache: %+v → %+v", before, after)
	}
	l, err := s.VerifiedListing(ctx, p)
	if err != nil || len(l.Root.Entries) == 0 {
		t.Fatalf("VerifiedListing = %v, %v", l, err)
	}
	if n3, err := s.Root(ctx, p); err != nil || n3 != l.Root {
		t.Errorf("Root after verification = %+v, %v; want the verified root", n3, err)
	}
}
