package upload

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	gonix "github.com/nix-community/go-nix/pkg/narinfo"

	"github.com/narfs/narfs/remote/backend"
	"github.com/narfs/narfs/remote/chunkindex"
	"github.com/narfs/narfs/remote/narinfo"
	"github.com/narfs/narfs/remote/storepath"
)

func TestParsePathInfo(t *testing.T) {
	const h = "sha256-h4gyzSK14DjhF7cBN4VY+Km2ytc4Gg5tV6noZdNPhaY="
	array := `[{"path":"/nix/store/0lpnji3h865p0cyrv1xkwzz7icygy75c-pt","narHash":"` + h + `","narSize":288,"references":["/nix/store/0lpnji3h865p0cyrv1xkwzz7icygy75c-pt"],"deriver":"/nix/store/1lpnji3h865p0cyrv1xkwzz7icygy75c-pt.drv","signatures":["k:abc"],"ca":"fixed:r:sha256:19l59z9nbs59axnhw6iqsz5bdagqb22kf0dp2zhkiq5m4b6k5247","registrationTime":1}]`
	object := `{"/nix/store/0lpnji3h865p0cyrv1xkwzz7icygy75c-pt":{"narHash":"` + h + `","narSize":288,"references":["/nix/store/0lpnji3h865p0cyrv1xkwzz7icygy75c-pt"],"deriver":"/nix/store/1lpnji3h865p0cyrv1xkwzz7icygy75c-pt.drv","signatures":["k:abc"],"ca":"fixed:r:sha256:19l59z9nbs59axnhw6iqsz5bdagqb22kf0dp2zhkiq5m4b6k5247"}}`
	for name, in := range map[string]string{"array": array, "object": object} {
		ps, err := ParsePathInfo([]byte(in))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		p := ps[0]
		if len(ps) != 1 || p.Abs() != "/nix/store/0lpnji3h865p0cyrv1xkwzz7icygy75c-pt" || p.NarSize != 288 ||
			p.NarHash.SRI() != h || len(p.References) != 1 || p.References[0] != p.Path ||
			p.Deriver != "1lpnji3h865p0cyrv1xkwzz7icygy75c-pt.drv" || p.Sigs[0] != "k:abc" || !strings.HasPrefix(p.CA, "fixed:r:") {
			t.Errorf("%s: %+v", name, p)
		}
	}
	if _, err := ParsePathInfo([]byte(`{"/nix/store/0lpnji3h865p0cyrv1xkwzz7icygy75c-pt":null}`)); err == nil {
		t.Error("an invalid path (null) was accepted")
	}
	if _, err := ParsePathInfo([]byte(`[{"path":"/nix/store/0lpnji3h865p0cyrv1xkwzz7icygy75c-pt","narHash":"md5:00","narSize":1}]`)); err == nil {
		t.Error("a bad narHash was accepted")
	}
}

func pushAll(t *testing.T, c *Cache, paths []PathInfo, opts PushOptions) []Result {
	t.Helper()
	var mu sync.Mutex
	var rs []Result
	if err := c.PushAll(context.Background(), paths, opts, func(r Result) {
		mu.Lock()
		rs = append(rs, r)
		mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	return rs
}

// TestPushNixReads: what Push writes, real Nix copies back byte for byte,
// for both object forms, and the index verifies against the narinfo.
func TestPushNixReads(t *testing.T) {
	f := nixFixture(t)
	for _, comp := range []string{"zstd", "none"} {
		t.Run(comp, func(t *testing.T) {
			c, dir := emptyCache(t)
			paths := query(t, true, f.ref)
			if len(paths) != 2 {
				t.Fatalf("closure of %s: %d paths", f.ref, len(paths))
			}
			for _, r := range pushAll(t, c, paths, PushOptions{Key: f.key, Compression: comp, Jobs: 2}) {
				if r.Err != nil || r.Skipped {
					t.Fatalf("%s: skipped %v, %v", r.Path, r.Skipped, r.Err)
				}
			}
			if b, _ := os.ReadFile(filepath.Join(dir, "nix-cache-info")); string(b) != CacheInfo {
				t.Errorf("nix-cache-info = %q", b)
			}
			store := nixCopyFrom(t, "file://"+dir, f.publicKey, f.ref)
			sameTree(t, store, f.ref)
			sameTree(t, store, f.tree)

			ni, err := c.readNarinfo(context.Background(), storeHash(f.tree))
			if err != nil {
				t.Fatal(err)
			}
			if ni.Compression != comp || !strings.HasPrefix(ni.URL, "nar/"+storepath.EncodeNix32(ni.FileHash.Digest)+".nar") {
				t.Errorf("narinfo: Compression %q, URL %q", ni.Compression, ni.URL)
			}
			checkIndex(t, c, ni, f.key.Public())
			ref, err := c.readNarinfo(context.Background(), storeHash(f.ref))
			if err != nil {
				t.Fatal(err)
			}
			if len(ref.References) != 1 || ref.References[0].Abs("/nix/store") != f.tree || ref.Deriver == "" {
				t.Errorf("narinfo of %s: References %v, Deriver %q", f.ref, ref.References, ref.Deriver)
			}

			// A second push finds everything there.
			for _, r := range pushAll(t, c, paths, PushOptions{Key: f.key, Compression: comp}) {
				if r.Err != nil || !r.Skipped {
					t.Errorf("second push of %s: skipped %v, %v", r.Path, r.Skipped, r.Err)
				}
			}
		})
	}
}

func storeHash(abs string) string {
	h, _, _ := strings.Cut(filepath.Base(abs), "-")
	return h
}

// checkIndex: the narinfo's index is signed, decodes, matches, and its
// chunks decode to the NAR.
func checkIndex(t *testing.T, c *Cache, ni *narinfo.NarInfo, pub narinfo.PublicKey) {
	t.Helper()
	if _, err := ni.Verify([]narinfo.PublicKey{pub}); err != nil {
		t.Errorf("narinfo signature: %v", err)
	}
	problems, err := c.Verify(context.Background(), ni.StorePath.Hash, VerifyOptions{Keys: []narinfo.PublicKey{pub}})
	if err != nil || len(problems.Reasons) != 0 {
		t.Errorf("verify %s: %v %v", ni.StorePath, err, problems.Reasons)
	}
	if !problems.Indexed {
		t.Errorf("verify %s found no index", ni.StorePath)
	}
	// The index travels in its own object (layout 2, signed in its
	// header); the narinfo holds only keys Nix writes.
	strictNarinfo(t, c, ni.StorePath.Hash)
	obj, err := backend.ReadAll(context.Background(), c.B, chunkindex.AliasKey(ni.StorePath.Hash), chunkindex.MaxObject)
	if err != nil {
		t.Fatal(err)
	}
	if o, _, err := chunkindex.VerifyObject(ni, obj, []narinfo.PublicKey{pub}); err != nil || o.Version != 2 {
		t.Errorf("index of %s: %v", ni.StorePath, err)
	}
}

// strictNarinfo: the stored narinfo parses with go-nix's strict parser
// (nar-serve's and other go-nix tools'), which refuses keys Nix does not
// write, and has none of narfs's index lines.
func strictNarinfo(t *testing.T, c *Cache, hash string) {
	t.Helper()
	data, err := backend.ReadAll(context.Background(), c.B, hash+".narinfo", narinfo.MaxSize)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gonix.Parse(bytes.NewReader(data)); err != nil {
		t.Errorf("%s.narinfo does not parse with go-nix: %v\n%s", hash, err, data)
	}
	if bytes.Contains(data, []byte("Narfs")) {
		t.Errorf("%s.narinfo carries narfs lines:\n%s", hash, data)
	}
}

// TestPushRefusesDamagedStore: a NAR that is not what the store's
// database says is never signed, and no narinfo appears.
func TestPushRefusesDamagedStore(t *testing.T) {
	f := nixFixture(t)
	c, dir := emptyCache(t)
	p := query(t, false, f.tree)[0]
	p.NarSize++
	rs := pushAll(t, c, []PathInfo{p}, PushOptions{Key: f.key})
	if len(rs) != 1 || rs[0].Err == nil || !strings.Contains(rs[0].Err.Error(), "differs") {
		t.Fatalf("push of a path with a wrong NarSize: %+v", rs)
	}
	if _, err := os.Stat(filepath.Join(dir, storeHash(f.tree)+".narinfo")); !os.IsNotExist(err) {
		t.Errorf("a narinfo was written: %v", err)
	}
}

// TestPushReferenceFailed: a path whose reference failed gets no narinfo
// (the cache never names a path whose closure it lacks).
func TestPushReferenceFailed(t *testing.T) {
	f := nixFixture(t)
	c, dir := emptyCache(t)
	paths := query(t, true, f.ref)
	for i := range paths {
		if paths[i].Abs() == f.tree {
			paths[i].NarHash.Digest = make([]byte, 32)
		}
	}
	failed := 0
	for _, r := range pushAll(t, c, paths, PushOptions{Key: f.key}) {
		if r.Err != nil {
			failed++
		}
	}
	if failed != 2 {
		t.Errorf("%d paths failed, want 2 (the damaged one and its referrer)", failed)
	}
	if _, err := os.Stat(filepath.Join(dir, storeHash(f.ref)+".narinfo")); !os.IsNotExist(err) {
		t.Errorf("the referrer's narinfo was written: %v", err)
	}
}
