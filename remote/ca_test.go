package remote

import (
	"bufio"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// caCacheDir is an unsigned cache of content-addressed paths whose CA is
// not the NarHash (testdata/gen-ca-cache.sh).
const caCacheDir = "testdata/cache-ca"

// caPaths reads testdata/cache-ca-paths.txt: base name → CA method.
func caPaths(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open("testdata/cache-ca-paths.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		base, method, ok := strings.Cut(sc.Text(), " ")
		if ok {
			m[base] = method
		}
	}
	if len(m) != 4 {
		t.Fatalf("cache-ca-paths.txt lists %d paths, want 4", len(m))
	}
	return m
}

func caPath(t *testing.T, suffix string) string {
	t.Helper()
	for base := range caPaths(t) {
		if strings.HasSuffix(base, "-"+suffix) {
			return base
		}
	}
	t.Fatalf("no %s path in cache-ca", suffix)
	return ""
}

func caNAR(t *testing.T, base string) []byte {
	t.Helper()
	ni := readNarinfo(t, caCacheDir, hashPart(base))
	data, err := os.ReadFile(filepath.Join(caCacheDir, ni.URL))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestContentAddressedMethods(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, caCacheDir, "", Config{RequireSigs: true})
	for base, method := range caPaths(t) {
		p, err := s.Resolve(ctx, base)
		if err != nil {
			t.Errorf("Resolve %s (%s): %v", base, method, err)
			continue
		}
		if !strings.HasPrefix(p.Trust, "content-addressed ("+method+":") {
			t.Errorf("Resolve %s: Trust %q", base, p.Trust)
		}
		_, err = s.materialize(ctx, p)
		if err != nil {
			t.Errorf("Materialize %s (%s): %v", base, method, err)
			continue
		}
		nd := caNAR(t, base)
		checkStored(t, s, p, buildListing(t, nd).Root, nd, base)
	}
	if st := s.Stats(); st.Corrupt != 0 || st.Fetches != 4 {
		t.Errorf("Stats %+v", st)
	}
}

// TestContentAddressedSwappedNAR replaces a CA path's NAR and updates the
// unsigned narinfo's NarHash and NarSize to match: nothing in the narinfo
// contradicts the CA, so only hashing the fetched bytes can catch it.
func TestContentAddressedSwappedNAR(t *testing.T) {
	for name, tc := range map[string]struct {
		path string
		nar  func(t *testing.T) []byte
	}{
		"flat sha256, other file":    {"flat-sha256", func(t *testing.T) []byte { return caNAR(t, caPath(t, "flat-sha1")) }},
		"flat sha1, other file":      {"flat-sha1", func(t *testing.T) []byte { return caNAR(t, caPath(t, "flat-sha256")) }},
		"text, other file":           {"text", func(t *testing.T) []byte { return caNAR(t, caPath(t, "flat-sha1")) }},
		"recursive sha512, other":    {"rec-sha512", func(t *testing.T) []byte { return narBytes(t, pathTreeSmall) }},
		"flat, executable file":      {"flat-sha256", func(t *testing.T) []byte { return narBytes(t, pathExec) }},
		"flat, directory":            {"flat-sha256", func(t *testing.T) []byte { return narBytes(t, pathTreeSmall) }},
		"flat, symlink":              {"flat-sha1", func(t *testing.T) []byte { return narBytes(t, pathLink) }},
		"text, directory":            {"text", func(t *testing.T) []byte { return caNAR(t, caPath(t, "rec-sha512")) }},
		"recursive sha512, one file": {"rec-sha512", func(t *testing.T) []byte { return caNAR(t, caPath(t, "text")) }},
	} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			dir := copyDir(t, caCacheDir)
			base := caPath(t, tc.path)
			ni := readNarinfo(t, dir, hashPart(base))
			data := tc.nar(t)
			setNAR(ni, "nar/swapped.nar", data)
			writeNarinfo(t, dir, ni)
			putFile(t, filepath.Join(dir, "nar", "swapped.nar"), data)
			removeFile(t, filepath.Join(dir, hashPart(base)+".ls"))

			s := openStore(t, dir, "", Config{RequireSigs: true})
			p, err := s.Resolve(ctx, base)
			if err != nil {
				t.Fatalf("Resolve: %v (the narinfo alone cannot show the swap)", err)
			}
			if _, err := s.materialize(ctx, p); !errors.Is(err, ErrCorrupt) {
				t.Errorf("Materialize of a swapped CA NAR = %v, want ErrCorrupt", err)
			}
			assertNothingKept(t, s)
			// Listing must not serve the swapped NAR's tree either.
			if _, err := s.listing(ctx, p); !errors.Is(err, ErrCorrupt) {
				t.Errorf("Listing = %v, want ErrCorrupt", err)
			}
		})
	}
}
