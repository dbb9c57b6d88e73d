package remote

import (
	"bytes"
	"crypto/sha256"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/narfs/narfs/nar"
)

// FuzzExtract feeds arbitrary bytes to the NAR extractor: it must return an
// error or a tree that matches nar.BuildListing, never panic and never
// write outside its destination.
func FuzzExtract(f *testing.F) {
	for _, data := range smallNARs(f) {
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		base := t.TempDir()
		dst := filepath.Join(base, "out", "root")
		if err := os.Mkdir(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		l, err := extract(bytes.NewReader(data), dst, nil, nil)
		// Whatever happened, nothing was written beside the destination.
		if names := dirEntries(t, base); len(names) != 1 || names[0] != "out" {
			t.Fatalf("extract wrote %v into the parent of its destination", names)
		}
		if names := dirEntries(t, filepath.Dir(dst)); len(names) > 1 {
			t.Fatalf("extract wrote %v beside root", names)
		}
		if err != nil {
			return
		}
		// extract rejects anything after the NAR's end, and BuildListing
		// must agree on the NAR itself.
		want, werr := nar.BuildListing(bytes.NewReader(data))
		if werr != nil {
			t.Fatalf("extract accepted a NAR BuildListing rejects: %v", werr)
		}
		if !SameListing(l.Root, want.Root) {
			t.Fatal("extract's listing differs from BuildListing's")
		}
		checkTree(t, dst, want.Root, data, "")
	})
}

// FuzzVerifyNAR feeds arbitrary bytes and a hostile NarSize (any int64 a
// narinfo may carry) to the verifier and the NAR parser, as a fetch does:
// never a panic, never more than NarSize+1 bytes read, and a NAR accepted
// at exactly NarSize bytes is one whose listing Check accepts for that
// NarSize (the test an unsigned .ls must pass is exact, not a guess).
func FuzzVerifyNAR(f *testing.F) {
	for _, data := range smallNARs(f) {
		f.Add(data, int64(len(data)))
		f.Add(data, int64(math.MaxInt64))
		f.Add(data, int64(len(data)-1))
	}
	f.Fuzz(func(t *testing.T, data []byte, narSize int64) {
		if narSize <= 0 {
			return // narinfo.Parse refuses these
		}
		v := &verifier{r: bytes.NewReader(data), limit: narSize, sha: sha256.New()}
		l, err := nar.BuildListing(v)
		if err == nil {
			err = v.drain()
		}
		if v.n > narSize && v.n-narSize > 1 {
			t.Fatalf("read %d bytes with NarSize %d", v.n, narSize)
		}
		if err != nil || v.n != narSize {
			return
		}
		if cerr := l.Check(narSize); cerr != nil {
			t.Fatalf("a NAR of exactly %d bytes, but its listing fails Check: %v", narSize, cerr)
		}
	})
}

// smallNARs are the fixture NARs under 64 KiB, the fuzzers' seeds.
func smallNARs(f *testing.F) [][]byte {
	var out [][]byte
	for _, dir := range []string{filepath.Join(fixtureDir, "cache-none", "nar"), filepath.Join(caCacheDir, "nar")} {
		ents, err := os.ReadDir(dir)
		if err != nil {
			f.Fatal(err)
		}
		for _, e := range ents {
			data, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				f.Fatal(err)
			}
			if len(data) < 64<<10 {
				out = append(out, data)
			}
		}
	}
	return out
}
