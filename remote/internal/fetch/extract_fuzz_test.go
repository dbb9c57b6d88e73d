package fetch

import (
	"bytes"
	"crypto/sha256"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/remote/blob"
	"github.com/narfs/narfs/remote/localcache"
)

// FuzzStore feeds arbitrary bytes to the code that stores a NAR in a
// local cache entry: it must return an error or a listing that matches
// nar.BuildListing, with every file's bytes where reads will look for
// them (the blob at its offset, or a file of its own), never panic, and
// never write anything but the blob and such files.
func FuzzStore(f *testing.F) {
	for _, data := range smallNARs(f) {
		f.Add(data)
	}
	// One cache for every input: what is checked is the pending entry.
	c, err := localcache.Open(f.TempDir(), 1<<30, quietLogger())
	if err != nil {
		f.Fatal(err)
	}
	defer c.Close()
	f.Fuzz(func(t *testing.T, data []byte) {
		pend, err := c.Begin()
		if err != nil {
			t.Fatal(err)
		}
		defer pend.Abort()
		bf, err := pend.CreateFile(blob.BlobFile)
		if err != nil {
			t.Fatal(err)
		}
		defer bf.Close()
		bw := &blobWriter{f: bf}
		l, _, err := store(io.TeeReader(bytes.NewReader(data), bw), bw, pend, nil, nil)
		dir := filepath.Dir(pend.Root())
		for _, name := range dirEntries(t, dir) {
			if name != blob.BlobFile && !strings.HasPrefix(name, "f-") {
				t.Fatalf("store wrote %q into the entry", name)
			}
		}
		if err != nil {
			return
		}
		want, werr := nar.BuildListing(bytes.NewReader(data))
		if werr != nil {
			t.Fatalf("store accepted a NAR BuildListing rejects: %v", werr)
		}
		if !nar.SameTree(l.Root, want.Root) {
			t.Fatal("store's listing differs from BuildListing's")
		}
		checkFiles(t, dir, l, data)
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
		v := &verifier{limit: narSize, sha: sha256.New()}
		r := newInspectedReadAhead(io.LimitReader(bytes.NewReader(data), satAdd(narSize, 1)), 2, 4096, v.inspect)
		l, err := nar.BuildListing(r)
		if err == nil {
			err = drain(r)
		}
		r.Close() // v is the inspector's until it has stopped
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
