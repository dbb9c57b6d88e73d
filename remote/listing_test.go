package remote

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/narfs/narfs/nar"
)

func TestListingFromLs(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, filepath.Join(fixtureDir, "cache-zstd"), "", trustedConfig(t))
	paths := fixturePaths(t)
	for _, fp := range paths {
		p := mustResolve(t, s, fp.base)
		l, err := s.listing(ctx, p)
		if err != nil {
			t.Errorf("Listing %s: %v", fp.base, err)
			continue
		}
		if got, want := encodeListing(t, l), encodeListing(t, buildListing(t, narBytes(t, fp.base))); got != want {
			t.Errorf("Listing %s:\n got %s\nwant %s", fp.base, got, want)
		}
	}
	st := s.Stats()
	if st.NarGets != 0 || st.NarBytes != 0 || st.Fetches != 0 {
		t.Errorf("listings with .ls files fetched NAR bytes: %+v", st)
	}
	if st.ListingGets != int64(len(paths)) {
		t.Errorf("ListingGets = %d, want %d", st.ListingGets, len(paths))
	}
	// Listings are kept in memory.
	for _, fp := range paths {
		if _, err := s.listing(ctx, mustResolve(t, s, fp.base)); err != nil {
			t.Fatal(err)
		}
	}
	if got := s.Stats().ListingGets; got != int64(len(paths)) {
		t.Errorf("ListingGets = %d after listing again, want %d", got, len(paths))
	}
}

func TestListingWithoutLs(t *testing.T) {
	ctx := context.Background()
	dir := copyCache(t, "cache-xz")
	for _, fp := range fixturePaths(t) {
		removeFile(t, filepath.Join(dir, hashPart(fp.base)+".ls"))
	}
	s := openStore(t, dir, "", trustedConfig(t))
	p := mustResolve(t, s, pathTreeSmall)
	l, err := s.listing(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	nd := narBytes(t, pathTreeSmall)
	if got, want := encodeListing(t, l), encodeListing(t, buildListing(t, nd)); got != want {
		t.Errorf("Listing built from the NAR:\n got %s\nwant %s", got, want)
	}
	if st := s.Stats(); st.NarGets != 1 || st.Fetches != 1 {
		t.Errorf("Stats %+v, want exactly one NAR fetch", st)
	}
	// The NAR fetched for the listing is the one files are read from.
	_, err = s.materialize(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	checkStored(t, s, p, l.Root, nd, pathTreeSmall)
	if got := s.Stats().NarGets; got != 1 {
		t.Errorf("NarGets = %d, want 1", got)
	}

	// A fresh Store on the same cache dir reads the local listing.
	s2 := openStore(t, dir, "", Config{TrustedKeys: testPublicKeys(t), RequireSigs: true, CacheDir: s.caches[0].cfg.CacheDir})
	l2, err := s2.listing(ctx, mustResolve(t, s2, pathTreeSmall))
	if err != nil {
		t.Fatal(err)
	}
	if encodeListing(t, l2) != encodeListing(t, l) {
		t.Error("listing from the local cache differs")
	}
	if st := s2.Stats(); st.NarGets != 0 || st.ListingGets != 0 {
		t.Errorf("listing a locally cached path asked the cache: %+v", st)
	}
}

// lsNode returns the .ls node of the first file of a path, in a listing
// decoded from the cache's .ls.
func lieAboutSize(t *testing.T, dir, base string, delta int64) (sub string) {
	t.Helper()
	f := filepath.Join(dir, hashPart(base)+".ls")
	data, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	l, err := nar.DecodeListing(data)
	if err != nil {
		t.Fatal(err)
	}
	sub, n := firstFile(l)
	n.Size += delta
	putFile(t, f, []byte(encodeListing(t, l)))
	return sub
}

// A .ls that lies within what NarSize allows (a size inside the same
// 8-byte padding) is believed for metadata until the NAR is fetched; from
// then on the NAR's listing is the only answer.
func TestListingLyingLs(t *testing.T) {
	ctx := context.Background()
	dir := copyCache(t, "cache-none")
	truth := buildListing(t, narBytes(t, pathTreeSmall))
	_, first := firstFile(truth)
	delta := int64(-1)
	if first.Size%8 == 1 {
		delta = 1
	}
	sub := lieAboutSize(t, dir, pathTreeSmall, delta)
	trueNode, _ := truth.Find(sub)

	s := openStore(t, dir, "", trustedConfig(t))
	p := mustResolve(t, s, pathTreeSmall)

	// The .ls is all Listing has: it is believed (it fits in NarSize).
	n, err := s.Lookup(ctx, p, sub)
	if err != nil {
		t.Fatal(err)
	}
	if n.Size != trueNode.Size+delta {
		t.Fatalf("Lookup %s: size %d, want the .ls's %d", sub, n.Size, trueNode.Size+delta)
	}
	if s.Stats().NarGets != 0 {
		t.Fatal("Listing fetched the NAR")
	}

	// The NAR is good; the lie is counted (and logged).
	if _, err := s.materialize(ctx, p); err != nil {
		t.Fatalf("Materialize after a lying .ls = %v", err)
	}
	if got := s.Stats().Corrupt; got != 1 {
		t.Errorf("Corrupt = %d, want the lie counted", got)
	}

	// From now on the verified NAR is the authority: no lie, and the
	// (genuine) contents are served without another download.
	n, err = s.Lookup(ctx, p, sub)
	if err != nil {
		t.Fatal(err)
	}
	if n.Size != trueNode.Size {
		t.Errorf("Lookup %s after the NAR was fetched: size %d, want the NAR's %d", sub, n.Size, trueNode.Size)
	}
	f, err := s.openFile(ctx, p, sub)
	if err != nil {
		t.Fatalf("OpenFile after the lie was found: %v", err)
	}
	f.Close()
	if f.Size != trueNode.Size {
		t.Errorf("OpenFile size %d, want %d", f.Size, trueNode.Size)
	}
	if st := s.Stats(); st.NarGets != 1 || st.ListingGets != 1 {
		t.Errorf("Stats %+v, want 1 NAR GET and 1 .ls GET", st)
	}

	// A restart keeps using the verified listing, not the .ls.
	s2 := openStore(t, dir, "", Config{TrustedKeys: testPublicKeys(t), RequireSigs: true, CacheDir: s.caches[0].cfg.CacheDir})
	n, err = s2.Lookup(ctx, mustResolve(t, s2, pathTreeSmall), sub)
	if err != nil || n.Size != trueNode.Size {
		t.Errorf("Lookup after restart: %+v, %v; want size %d", n, err, trueNode.Size)
	}
}

func TestListingLsExceedingNarSize(t *testing.T) {
	ctx := context.Background()
	dir := copyCache(t, "cache-none")
	ni := readNarinfo(t, dir, hashPart(pathTreeSmall))
	lieAboutSize(t, dir, pathTreeSmall, ni.NarSize)
	s := openStore(t, dir, "", trustedConfig(t))
	p := mustResolve(t, s, pathTreeSmall)
	l, err := s.listing(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := encodeListing(t, l), encodeListing(t, buildListing(t, narBytes(t, pathTreeSmall))); got != want {
		t.Errorf("Listing with an impossible .ls:\n got %s\nwant %s", got, want)
	}
	if st := s.Stats(); st.NarGets != 1 || st.Fetches != 1 {
		t.Errorf("Stats %+v, want the NAR fetched once", st)
	}
}

func TestListingMalformedLs(t *testing.T) {
	for name, ls := range map[string]string{
		"garbage":   "this is not JSON",
		"version":   `{"version":2,"root":{"type":"regular","size":1}}`,
		"empty":     "",
		"negative":  `{"version":1,"root":{"type":"regular","size":-5,"narOffset":96}}`,
		"wrongtype": `{"version":1,"root":{"type":"symlink","target":"/etc/passwd"}}`,
	} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			dir := copyCache(t, "cache-none")
			putFile(t, filepath.Join(dir, hashPart(pathFile)+".ls"), []byte(ls))
			s := openStore(t, dir, "", trustedConfig(t))
			p := mustResolve(t, s, pathFile)
			want := encodeListing(t, buildListing(t, narBytes(t, pathFile)))
			// A symlink cannot be the NAR of a file's NarSize: the .ls is
			// refused and the NAR's listing used.
			l, err := s.listing(ctx, p)
			if err != nil {
				t.Fatal(err)
			}
			if got := encodeListing(t, l); got != want {
				t.Errorf("Listing:\n got %s\nwant %s", got, want)
			}
		})
	}
}

func TestListingUntrustedPathFetchesNothing(t *testing.T) {
	// Listing needs a PathInfo, which only Resolve hands out; an untrusted
	// path never gets that far.
	s := openStore(t, filepath.Join(fixtureDir, "cache-unsigned"), "", trustedConfig(t))
	if _, err := s.Resolve(context.Background(), pathLib); !errors.Is(err, ErrUntrusted) {
		t.Fatalf("Resolve = %v", err)
	}
	if st := s.Stats(); st.ListingGets != 0 || st.NarGets != 0 {
		t.Errorf("an untrusted path cost %+v", st)
	}
}

// With VerifiedMetadataOnly the cache's .ls is never read: a lying .ls
// cannot show anything, and metadata comes from the verified NAR.
func TestVerifiedMetadataOnlyIgnoresListings(t *testing.T) {
	dir := copyCache(t, "cache-zstd")
	var app string
	for _, p := range fixturePaths(t) {
		if strings.HasSuffix(p.base, "-narfs-test-app") {
			app = p.base
		}
	}
	// A lie that would otherwise be served without any NAR download.
	lie := `{"version":1,"root":{"type":"symlink","target":"/tmp/evil"}}`
	if err := os.WriteFile(filepath.Join(dir, app[:32]+".ls"), []byte(lie), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := trustedConfig(t)
	cfg.VerifiedMetadataOnly = true
	s := openStore(t, dir, "", cfg)
	p := mustResolve(t, s, app)
	l, err := s.listing(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if l.Root.Type != nar.TypeDirectory {
		t.Errorf("root is a %s: the unsigned .ls was used", l.Root.Type)
	}
	if st := s.Stats(); st.ListingGets != 0 || st.NarGets != 1 {
		t.Errorf("ListingGets %d NarGets %d, want 0 and 1", st.ListingGets, st.NarGets)
	}
}
