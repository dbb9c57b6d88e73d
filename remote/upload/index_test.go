package upload

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/narfs/narfs/remote/chunkindex"
	"github.com/narfs/narfs/remote/narinfo"
)

// nixCache writes the fixture closure into a new cache with nix copy.
func nixCache(t *testing.T, f *fixture, params string) (*Cache, string) {
	t.Helper()
	c, dir := emptyCache(t)
	sk := filepath.Join(t.TempDir(), "sk")
	if err := os.WriteFile(sk, []byte(f.key.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	run(t, dir, "nix", "copy", "--to", fmt.Sprintf("file://%s?%s&secret-key=%s", dir, params, sk), f.ref)
	return c, dir
}

func indexAll(t *testing.T, c *Cache, opts IndexOptions, hashes ...string) []IndexResult {
	t.Helper()
	var mu sync.Mutex
	var rs []IndexResult
	if err := c.IndexAll(context.Background(), hashes, opts, func(r IndexResult) {
		mu.Lock()
		rs = append(rs, r)
		mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if r.Err != nil {
			t.Fatalf("index %s: %v", r.Path, r.Err)
		}
	}
	return rs
}

// TestIndexInPlace: an uncompressed cache is indexed without moving its
// objects; an xz one is re-encoded, keeping Nix's signatures. Real Nix
// reads both back; a rerun does nothing.
func TestIndexInPlace(t *testing.T) {
	f := nixFixture(t)
	pub := f.key.Public()
	for _, comp := range []string{"none", "xz"} {
		t.Run(comp, func(t *testing.T) {
			c, dir := nixCache(t, f, "compression="+comp)
			hashes := []string{storeHash(f.tree), storeHash(f.ref)}
			before, err := c.readNarinfo(context.Background(), hashes[0])
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range indexAll(t, c, IndexOptions{Key: f.key, Prune: true}, hashes...) {
				if r.Skipped || (comp == "none") != (r.OldURL == "") {
					t.Errorf("%s: %+v", r.Path, r)
				}
			}
			after, err := c.readNarinfo(context.Background(), hashes[0])
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(before.Sigs, after.Sigs) || before.NarHash.String() != after.NarHash.String() {
				t.Errorf("narinfo lost its signatures: %v, was %v", after.Sigs, before.Sigs)
			}
			if comp == "none" && (after.URL != before.URL || after.Compression != before.Compression) {
				t.Errorf("uncompressed object moved: %s (%s), was %s", after.URL, after.Compression, before.URL)
			}
			if _, err := os.Stat(filepath.Join(dir, before.URL)); (comp == "xz") != os.IsNotExist(err) {
				t.Errorf("old object %s after --prune: %v", before.URL, err)
			}
			checkIndex(t, c, after, pub)
			ci, _ := os.ReadFile(filepath.Join(dir, "nix-cache-info"))
			info, err := narinfo.ParseCacheInfo(ci)
			if err != nil || !info.IndexAliases || info.StoreDir != "/nix/store" {
				t.Errorf("nix-cache-info after index: %+v, %v", info, err)
			}
			// Nix reads the rewritten nix-cache-info and the new objects.
			store := nixCopyFrom(t, "file://"+dir, f.publicKey, f.ref)
			sameTree(t, store, f.ref)
			sameTree(t, store, f.tree)
			// A cache indexed before aliases existed gets them from a rerun.
			alias := filepath.Join(dir, chunkindex.AliasKey(hashes[0]))
			if err := os.Remove(alias); err != nil {
				t.Fatal(err)
			}
			for _, r := range indexAll(t, c, IndexOptions{Key: f.key}, hashes...) {
				if !r.Skipped {
					t.Errorf("rerun indexed %s again", r.Path)
				}
			}
			checkIndex(t, c, after, pub)
		})
	}
}

// TestVerifyFindings: verify names what is wrong.
func TestVerifyFindings(t *testing.T) {
	f := nixFixture(t)
	c, dir := emptyCache(t)
	pushAll(t, c, query(t, true, f.ref), PushOptions{Key: f.key})
	keys := []narinfo.PublicKey{f.key.Public()}
	tree, ref := storeHash(f.tree), storeHash(f.ref)

	// Another path's listing.
	ls, _ := os.ReadFile(filepath.Join(dir, ref+".ls"))
	os.WriteFile(filepath.Join(dir, tree+".ls"), ls, 0o644)
	r, err := c.Verify(context.Background(), tree, VerifyOptions{Keys: keys})
	if err != nil || len(r.Reasons) != 1 || r.Reasons[0][:4] != ".ls:" {
		t.Errorf("wrong .ls: %v %q", err, r.Reasons)
	}
	// An untrusted key.
	other := f.key
	other.Name = "other-1"
	r, _ = c.Verify(context.Background(), ref, VerifyOptions{Keys: []narinfo.PublicKey{other.Public()}})
	if len(r.Reasons) != 2 { // narinfo and index signatures
		t.Errorf("untrusted key: %q", r.Reasons)
	}
	// A missing narinfo.
	r, _ = c.Verify(context.Background(), "00000000000000000000000000000000", VerifyOptions{Keys: keys})
	if len(r.Reasons) != 1 {
		t.Errorf("missing narinfo: %q", r.Reasons)
	}

	// The index alias readers fetch with the narinfo: another path's
	// index there (validly signed, but not this one's), then none at all
	// in a cache whose nix-cache-info says it keeps them.
	alias := filepath.Join(dir, chunkindex.AliasKey(ref))
	foreign, err := os.ReadFile(filepath.Join(dir, chunkindex.AliasKey(tree)))
	if err != nil {
		t.Fatal(err)
	}
	if r, err := c.Verify(context.Background(), ref, VerifyOptions{Keys: keys}); err != nil || len(r.Reasons) != 0 {
		t.Fatalf("before the alias changes: %v %q", err, r.Reasons)
	}
	if err := os.WriteFile(alias, foreign, 0o644); err != nil {
		t.Fatal(err)
	}
	r, err = c.Verify(context.Background(), ref, VerifyOptions{Keys: keys})
	if err != nil || len(r.Reasons) != 1 || !strings.Contains(r.Reasons[0], "not the index the narinfo names") {
		t.Errorf("foreign alias: %v %q", err, r.Reasons)
	}
	os.Remove(alias)
	r, err = c.Verify(context.Background(), ref, VerifyOptions{Keys: keys})
	if err != nil || len(r.Reasons) != 1 || !strings.Contains(r.Reasons[0], "missing") {
		t.Errorf("missing alias: %v %q", err, r.Reasons)
	}
	// narfs index puts it back.
	if err := c.IndexAll(context.Background(), []string{ref}, IndexOptions{Key: f.key}, func(IndexResult) {}); err != nil {
		t.Fatal(err)
	}
	if r, err := c.Verify(context.Background(), ref, VerifyOptions{Keys: keys}); err != nil || len(r.Reasons) != 0 {
		t.Errorf("after narfs index: %v %q", err, r.Reasons)
	}
}
