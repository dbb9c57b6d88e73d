package remote

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/remote/chunkindex"
)

// lyingLs writes a .ls for base that shrinks one file by a byte within
// its 8-byte padding: it describes a NAR of exactly the signed NarSize
// with every offset in place, so nothing short of a signed listing (or
// the NAR) can tell. It returns that file and its true size.
func lyingLs(t *testing.T, c *indexedCache, base string) (sub string, size int64) {
	t.Helper()
	var buf bytes.Buffer
	if err := c.listing.Encode(&buf); err != nil {
		t.Fatal(err)
	}
	l, err := nar.DecodeListing(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	for name, n := range filesOf(l) {
		if n.Size > 0 && n.Size%8 != 1 {
			sub, size = name, n.Size
			n.Size--
			break
		}
	}
	if sub == "" {
		t.Fatal("no file to lie about")
	}
	if err := l.Check(c.x.NarSize); err != nil {
		t.Fatalf("the lie must pass the .ls checks: %v", err)
	}
	buf.Reset()
	if err := l.Encode(&buf); err != nil {
		t.Fatal(err)
	}
	putFile(t, filepath.Join(c.dir, hashPart(base)+".ls"), buf.Bytes())
	return sub, size
}

// stripIndex removes every trace of the path's index from the cache: the
// narinfo lines (re-signed, as they are not covered by the signature
// anyway) and the objects.
func stripIndex(t *testing.T, c *indexedCache, base string) {
	t.Helper()
	ni := readNarinfo(t, c.dir, hashPart(base))
	for _, k := range []string{chunkindex.KeyURL, chunkindex.KeySize, chunkindex.KeySig} {
		ni.Set(k) // no values: removed
	}
	writeNarinfo(t, c.dir, ni)
	os.RemoveAll(filepath.Join(c.dir, "index"))
}

func declareIndexes(t *testing.T, dir string) {
	t.Helper()
	p := filepath.Join(dir, "nix-cache-info")
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	putFile(t, p, append(data, []byte(chunkindex.CacheInfoKey+": 1\n")...))
}

// TestIndexedNoDowngradeToLs: on an indexed cache, stripping or spoiling
// a path's index and adding a lying .ls must not bring the .ls's metadata
// back; the path's metadata then comes from its verified NAR.
func TestIndexedNoDowngradeToLs(t *testing.T) {
	for name, tc := range map[string]struct {
		downgrade func(t *testing.T, c *indexedCache)
		// cacheDir: the local cache, shared with an earlier mount that
		// verified the path's index, or "" for a fresh one.
		seenBefore bool
	}{
		"cache declares indexes, index stripped": {downgrade: func(t *testing.T, c *indexedCache) {
			declareIndexes(t, c.dir)
			stripIndex(t, c, pathTree)
		}},
		"narinfo names a spoiled index": {downgrade: func(t *testing.T, c *indexedCache) {
			p := filepath.Join(c.dir, "index", "x.nidx")
			putFile(t, p, []byte("junk"))
		}},
		"index verified here before, then stripped": {seenBefore: true, downgrade: func(t *testing.T, c *indexedCache) {
			stripIndex(t, c, pathTree)
		}},
	} {
		t.Run(name, func(t *testing.T) {
			c := makeIndexedCache(t, pathTree, "zstd")
			cfg := trustedConfig(t)
			if tc.seenBefore {
				s := openStore(t, c.dir, "", cfg)
				p := mustResolve(t, s, pathTree)
				if _, err := s.Lookup(context.Background(), p, firstName(c.listing)); err != nil {
					t.Fatalf("lookup through the index: %v", err)
				}
				s.Close()
			}
			tc.downgrade(t, c)
			sub, size := lyingLs(t, c, pathTree)
			s := openStore(t, c.dir, "", cfg)
			p := mustResolve(t, s, pathTree)
			if _, err := s.Root(context.Background(), p); err != nil {
				t.Fatalf("Root: %v", err)
			}
			n, err := s.Lookup(context.Background(), p, sub)
			if err != nil {
				t.Fatalf("lookup of %q: %v", sub, err)
			}
			if n.Size != size {
				t.Fatalf("%s: size %d (the .ls's lie), want %d", sub, n.Size, size)
			}
		})
	}
}

// TestStockLsStillUsed pins the documented limit: a cache that neither
// declares indexes nor names one for the path, and a path whose index
// never verified here, is a stock cache, whose .ls is believed within the
// NarSize bounds until the NAR is fetched (--verified-metadata-only
// ignores it).
func TestStockLsStillUsed(t *testing.T) {
	c := makeIndexedCache(t, pathTree, "zstd")
	stripIndex(t, c, pathTree)
	sub, size := lyingLs(t, c, pathTree)
	s := openStore(t, c.dir, "", trustedConfig(t))
	p := mustResolve(t, s, pathTree)
	if n, err := s.Lookup(context.Background(), p, sub); err != nil || n.Size != size-1 {
		t.Fatalf("stock cache: the .ls answers lookups before the NAR is fetched: %v %v", n, err)
	}
	cfg := trustedConfig(t)
	cfg.VerifiedMetadataOnly = true
	s = openStore(t, c.dir, "", cfg)
	p = mustResolve(t, s, pathTree)
	if n, err := s.Lookup(context.Background(), p, sub); err != nil || n.Size != size {
		t.Fatalf("--verified-metadata-only: %v %v, want size %d", n, err, size)
	}
}
