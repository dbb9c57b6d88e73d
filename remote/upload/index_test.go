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
			// A rerun finds every index in place.
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

	// The index is its alias object: another path's index there (validly
	// signed, but not for this path), then none at all.
	alias := filepath.Join(dir, chunkindex.AliasKey(ref))
	foreign, err := os.ReadFile(filepath.Join(dir, chunkindex.AliasKey(tree)))
	if err != nil {
		t.Fatal(err)
	}
	if r, err := c.Verify(context.Background(), ref, VerifyOptions{Keys: keys}); err != nil || len(r.Reasons) != 0 || !r.Indexed {
		t.Fatalf("before the alias changes: %v %q", err, r.Reasons)
	}
	if err := os.WriteFile(alias, foreign, 0o644); err != nil {
		t.Fatal(err)
	}
	r, err = c.Verify(context.Background(), ref, VerifyOptions{Keys: keys})
	if err != nil || len(r.Reasons) != 1 || !strings.Contains(r.Reasons[0], "does not verify") {
		t.Errorf("foreign alias: %v %q", err, r.Reasons)
	}
	os.Remove(alias)
	r, err = c.Verify(context.Background(), ref, VerifyOptions{Keys: keys})
	if err != nil || len(r.Reasons) != 0 || r.Indexed {
		t.Errorf("missing alias: %v %q %v", err, r.Reasons, r.Indexed)
	}
	// narfs index puts it back.
	if err := c.IndexAll(context.Background(), []string{ref}, IndexOptions{Key: f.key}, func(IndexResult) {}); err != nil {
		t.Fatal(err)
	}
	if r, err := c.Verify(context.Background(), ref, VerifyOptions{Keys: keys}); err != nil || len(r.Reasons) != 0 {
		t.Errorf("after narfs index: %v %q", err, r.Reasons)
	}
}

// TestIndexUpgradesLayout1: a cache indexed the old way (narinfo lines
// naming a layout-1 index signed in the narinfo) is read by verify and
// rewritten by narfs index: the narinfo loses the lines and keeps every
// other one (Nix's signatures included), the index moves into its alias
// object with its signature, and Nix still reads the cache.
func TestIndexUpgradesLayout1(t *testing.T) {
	f := nixFixture(t)
	c, dir := emptyCache(t)
	pushAll(t, c, query(t, true, f.ref), PushOptions{Key: f.key})
	keys := []narinfo.PublicKey{f.key.Public()}
	hash := storeHash(f.tree)
	ni, err := c.readNarinfo(context.Background(), hash)
	if err != nil {
		t.Fatal(err)
	}
	// Turn the path into layout 1, as narfs wrote it before.
	aliasFile := filepath.Join(dir, chunkindex.AliasKey(hash))
	obj, err := os.ReadFile(aliasFile)
	if err != nil {
		t.Fatal(err)
	}
	o, err := chunkindex.Split(obj)
	if err != nil {
		t.Fatal(err)
	}
	const oldKey = "index/old-layout.nidx"
	if err := os.WriteFile(filepath.Join(dir, oldKey), o.Payload, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(aliasFile, o.Payload, 0o644); err != nil {
		t.Fatal(err)
	}
	ni.Set(chunkindex.KeyURL, oldKey)
	ni.Set(chunkindex.KeySize, fmt.Sprint(len(o.Payload)))
	ni.Set(chunkindex.KeySig, chunkindex.Sign(f.key, ni, o.Payload))
	ni.Set("X-Other", "kept")
	if err := os.WriteFile(filepath.Join(dir, hash+".narinfo"), ni.Marshal(), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := c.Verify(context.Background(), hash, VerifyOptions{Keys: keys})
	if err != nil || !r.Indexed || len(r.Reasons) != 1 || !strings.Contains(r.Reasons[0], "layout 1") {
		t.Fatalf("verify of layout 1: %v %v %q", err, r.Indexed, r.Reasons)
	}

	rs := indexAll(t, c, IndexOptions{Key: f.key}, hash)
	if len(rs) != 1 || rs[0].Skipped || rs[0].OldURL != "" {
		t.Fatalf("index of a layout-1 path: %+v", rs)
	}
	after, err := c.readNarinfo(context.Background(), hash)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := after.Get(chunkindex.KeyURL); ok || len(after.GetAll(chunkindex.KeySig)) != 0 {
		t.Errorf("narinfo still names its index: %s", after.Marshal())
	}
	if v, _ := after.Get("X-Other"); v != "kept" || !slices.Equal(after.Sigs, ni.Sigs) || after.URL != ni.URL {
		t.Errorf("narinfo lost lines: %s", after.Marshal())
	}
	if r, err := c.Verify(context.Background(), hash, VerifyOptions{Keys: keys}); err != nil || !r.Indexed || len(r.Reasons) != 0 {
		t.Errorf("verify after index: %v %v %q", err, r.Indexed, r.Reasons)
	}
	// Without the foreign line it is a narinfo any strict reader takes.
	after.Set("X-Other")
	os.WriteFile(filepath.Join(dir, hash+".narinfo"), after.Marshal(), 0o644)
	checkIndex(t, c, after, f.key.Public())
	if rs := indexAll(t, c, IndexOptions{Key: f.key}, hash); !rs[0].Skipped {
		t.Errorf("second index: %+v", rs[0])
	}
	store := nixCopyFrom(t, "file://"+dir, f.publicKey, f.ref)
	sameTree(t, store, f.tree)
}
