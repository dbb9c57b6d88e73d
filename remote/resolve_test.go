package remote

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func TestResolveSigned(t *testing.T) {
	s := openStore(t, filepath.Join(fixtureDir, "cache-none"), "", trustedConfig(t))
	ctx := context.Background()

	for _, fp := range fixturePaths(t) {
		p, err := s.Resolve(ctx, fp.base)
		if err != nil {
			t.Errorf("Resolve %s: %v", fp.base, err)
			continue
		}
		if p.Path.String() != fp.base {
			t.Errorf("Resolve %s: path %s", fp.base, p.Path)
		}
		if !strings.Contains(p.Trust, "narfs-test-1") {
			t.Errorf("Resolve %s: Trust %q does not name the key", fp.base, p.Trust)
		}
		if got := p.Abs(s.StoreDir()); got != "/nix/store/"+fp.base {
			t.Errorf("Abs = %s", got)
		}
	}
	p := mustResolve(t, s, pathLib)
	if p.NarInfo.NarSize != 1040 || p.NarInfo.Deriver != "hx04fngjxnjapr44azdj51kk2pyh26p2-narfs-test-lib.drv" {
		t.Errorf("narinfo of %s: NarSize %d Deriver %q", pathLib, p.NarInfo.NarSize, p.NarInfo.Deriver)
	}

	h, err := s.ResolveHash(ctx, hashPart(pathLib))
	if err != nil || h.Path.String() != pathLib {
		t.Errorf("ResolveHash: %v, %v", h, err)
	}
}

func TestResolveNotFound(t *testing.T) {
	s := openStore(t, filepath.Join(fixtureDir, "cache-none"), "", trustedConfig(t))
	ctx := context.Background()
	for _, base := range []string{
		hashPart(pathLib) + "-other-name", // right hash, wrong name
		"",
		"short",
		hashPart(pathLib),       // no name
		hashPart(pathLib) + "-", // empty name
		hashPart(pathLib) + "-..",
		hashPart(pathLib) + "-.",
		"..",
		"../" + pathLib,
		hashPart(pathLib) + "-a/b",
		hashPart(pathLib) + "-a b",
		"jq3hgqjn0hn0wmnld235n75qdiv5y6ye-narfs-test-lib", // 'e' is not nix32
		"JQ3HGQJN0HN0WMNLD235N75QDIV5Y6YK-narfs-test-lib",
		"jq3hgqjn0hn0wmnld235n75qdiv5y6y-narfs-test-lib", // 31 chars
	} {
		if _, err := s.Resolve(ctx, base); !errors.Is(err, ErrNotFound) {
			t.Errorf("Resolve(%q) = %v, want ErrNotFound", base, err)
		}
	}
	for _, h := range []string{"", "short", "jq3hgqjn0hn0wmnld235n75qdiv5y6ye", "../jq3hgqjn0hn0wmnld235n75qdiv5y6"} {
		if _, err := s.ResolveHash(ctx, h); !errors.Is(err, ErrNotFound) {
			t.Errorf("ResolveHash(%q) = %v, want ErrNotFound", h, err)
		}
	}
	// Only the right-hash-wrong-name case may have asked the cache.
	if got := s.Stats().NarinfoGets; got != 1 {
		t.Errorf("NarinfoGets = %d, want 1 (invalid names must not reach the cache)", got)
	}
}

func TestResolveNarinfoDescribingAnotherPath(t *testing.T) {
	dir := copyCache(t, "cache-none")
	// The lib's narinfo stored under the app's hash: signed, but not for
	// the path asked for.
	copyFile(t, filepath.Join(dir, hashPart(pathLib)+".narinfo"), filepath.Join(dir, hashPart(pathApp)+".narinfo"))
	s := openStore(t, dir, "", trustedConfig(t))
	_, err := s.Resolve(context.Background(), pathApp)
	if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrNotFound) {
		t.Errorf("Resolve of a narinfo describing another path = %v, want ErrCorrupt or ErrNotFound", err)
	}
}

func TestResolveMalformedNarinfo(t *testing.T) {
	dir := copyCache(t, "cache-none")
	putFile(t, filepath.Join(dir, hashPart(pathLib)+".narinfo"), []byte("StorePath: nonsense\n"))
	s := openStore(t, dir, "", trustedConfig(t))
	if _, err := s.Resolve(context.Background(), pathLib); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Resolve of a malformed narinfo = %v, want ErrCorrupt", err)
	}
}

func TestTrustNoKeys(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, filepath.Join(fixtureDir, "cache-none"), "", Config{RequireSigs: true})
	for _, fp := range fixturePaths(t) {
		p, err := s.Resolve(ctx, fp.base)
		if !fp.ca {
			if !errors.Is(err, ErrUntrusted) {
				t.Errorf("Resolve %s without keys = %v, want ErrUntrusted", fp.base, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("Resolve CA path %s without keys: %v", fp.base, err)
			continue
		}
		if !strings.HasPrefix(p.Trust, "content-addressed") {
			t.Errorf("Resolve %s: Trust %q, want content-addressed", fp.base, p.Trust)
		}
	}
}

func TestTrustWrongKey(t *testing.T) {
	ctx := context.Background()
	keys := testPublicKeys(t)
	other := keys[0]
	other.Key = append([]byte(nil), other.Key...)
	other.Key[0] ^= 1 // same name, different key
	s := openStore(t, filepath.Join(fixtureDir, "cache-none"), "", Config{RequireSigs: true, TrustedKeys: keys[:0:0]})
	s2 := openStore(t, filepath.Join(fixtureDir, "cache-none"), "", Config{RequireSigs: true, TrustedKeys: append(keys[:0:0], other)})
	for _, st := range []*Core{s, s2} {
		if _, err := st.Resolve(ctx, pathLib); !errors.Is(err, ErrUntrusted) {
			t.Errorf("Resolve signed by an untrusted key = %v, want ErrUntrusted", err)
		}
	}
}

func TestTrustUnsignedCache(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(fixtureDir, "cache-unsigned")
	s := openStore(t, dir, "", trustedConfig(t))
	seen := 0
	for _, fp := range fixturePaths(t) {
		if !fileExists(filepath.Join(dir, hashPart(fp.base)+".narinfo")) {
			continue
		}
		seen++
		p, err := s.Resolve(ctx, fp.base)
		if !fp.ca {
			if !errors.Is(err, ErrUntrusted) {
				t.Errorf("Resolve unsigned input-addressed %s = %v, want ErrUntrusted", fp.base, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("Resolve unsigned CA %s: %v", fp.base, err)
			continue
		}
		if !strings.HasPrefix(p.Trust, "content-addressed") {
			t.Errorf("Resolve %s: Trust %q, want content-addressed…", fp.base, p.Trust)
		}
		_, err = s.materialize(ctx, p)
		if err != nil {
			t.Errorf("Materialize %s: %v", fp.base, err)
			continue
		}
		nd := narBytes(t, fp.base)
		checkStored(t, s, p, buildListing(t, nd).Root, nd, fp.base)
	}
	if seen < 2 {
		t.Fatalf("cache-unsigned holds only %d fixture paths", seen)
	}
}

func TestTrustForgedCA(t *testing.T) {
	ctx := context.Background()
	dir := copyCache(t, "cache-unsigned")
	lib := readNarinfo(t, dir, hashPart(pathLib))
	file := readNarinfo(t, dir, hashPart(pathFile))

	for name, ca := range map[string]string{
		"copied":     file.CA,                           // another path's genuine CA
		"fabricated": "fixed:r:" + lib.NarHash.String(), // the lib's own NAR hash
		"text":       "text:" + lib.NarHash.String(),
		"garbage":    "fixed:r:sha256:nonsense",
	} {
		t.Run(name, func(t *testing.T) {
			ni := *lib
			ni.CA = ca
			writeNarinfo(t, dir, &ni)
			s := openStore(t, dir, "", trustedConfig(t))
			if _, err := s.Resolve(ctx, pathLib); !errors.Is(err, ErrUntrusted) && !errors.Is(err, ErrCorrupt) {
				t.Errorf("Resolve with forged CA %q = %v, want ErrUntrusted", ca, err)
			} else if errors.Is(err, ErrCorrupt) && name != "garbage" {
				t.Errorf("Resolve with forged CA %q = %v, want ErrUntrusted", ca, err)
			}
		})
	}
}

func TestTrustCASwappedNAR(t *testing.T) {
	ctx := context.Background()
	dir := copyCache(t, "cache-unsigned")
	other := narBytes(t, pathExec)
	putFile(t, filepath.Join(dir, "nar", "swapped.nar"), other)

	t.Run("NarHash updated", func(t *testing.T) {
		// NarHash and NarSize describe the new NAR; the CA still promises
		// the old contents.
		ni := readNarinfo(t, dir, hashPart(pathTreeSmall))
		setNAR(ni, "nar/swapped.nar", other)
		writeNarinfo(t, dir, ni)
		s := openStore(t, dir, "", trustedConfig(t))
		_, err := s.Resolve(ctx, pathTreeSmall)
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("Resolve CA path with swapped NAR = %v, want ErrCorrupt", err)
		}
	})
	t.Run("CA updated too", func(t *testing.T) {
		// Now the CA matches the NAR but no longer the store path.
		ni := readNarinfo(t, dir, hashPart(pathTreeSmall))
		setNAR(ni, "nar/swapped.nar", other)
		ni.CA = "fixed:r:" + ni.NarHash.String()
		writeNarinfo(t, dir, ni)
		s := openStore(t, dir, "", trustedConfig(t))
		_, err := s.Resolve(ctx, pathTreeSmall)
		if !errors.Is(err, ErrUntrusted) {
			t.Errorf("Resolve CA path with swapped NAR and CA = %v, want ErrUntrusted", err)
		}
	})
	t.Run("NarHash kept", func(t *testing.T) {
		// The narinfo is untouched, only the file behind URL changed: the
		// fetch must notice.
		dir := copyCache(t, "cache-none")
		ni := readNarinfo(t, dir, hashPart(pathTreeSmall))
		putFile(t, filepath.Join(dir, ni.URL), other)
		s := openStore(t, dir, "", Config{RequireSigs: true})
		p := mustResolve(t, s, pathTreeSmall)
		if _, err := s.materialize(ctx, p); !errors.Is(err, ErrCorrupt) {
			t.Errorf("Materialize of a swapped NAR = %v, want ErrCorrupt", err)
		}
	})
}

func TestTrustSignaturesNotRequired(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(fixtureDir, "cache-unsigned")
	for name, open := range map[string]func(t *testing.T) *Core{
		"RequireSigs=false": func(t *testing.T) *Core { return openStore(t, dir, "", Config{}) },
		"trusted=true":      func(t *testing.T) *Core { return openStore(t, dir, "trusted=true", Config{RequireSigs: true}) },
	} {
		t.Run(name, func(t *testing.T) {
			s := open(t)
			p, err := s.Resolve(ctx, pathLib)
			if err != nil {
				t.Fatalf("Resolve unsigned input-addressed path: %v", err)
			}
			if !strings.HasPrefix(p.Trust, "unchecked") {
				t.Errorf("Trust = %q, want unchecked…", p.Trust)
			}
			_, err = s.materialize(ctx, p)
			if err != nil {
				t.Fatal(err)
			}
			nd := narBytes(t, pathLib)
			checkStored(t, s, p, buildListing(t, nd).Root, nd, pathLib)
			if _, err := s.Resolve(ctx, pathFile); err != nil {
				t.Errorf("Resolve CA path: %v", err)
			}
		})
	}
}

func TestTrustUncheckedStillVerifiesNAR(t *testing.T) {
	// Turning signatures off trusts the narinfo, not the bytes.
	ctx := context.Background()
	dir := copyCache(t, "cache-unsigned")
	ni := readNarinfo(t, dir, hashPart(pathLib))
	data := narBytes(t, pathLib)
	setNAR(ni, "nar/lib.nar", data)
	writeNarinfo(t, dir, ni)
	data[len(data)/2] ^= 0x20
	putFile(t, filepath.Join(dir, "nar/lib.nar"), data)
	s := openStore(t, dir, "", Config{})
	p := mustResolve(t, s, pathLib)
	if _, err := s.materialize(ctx, p); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Materialize of a corrupt NAR without signature checks = %v, want ErrCorrupt", err)
	}
}
