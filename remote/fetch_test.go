package remote

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/remote/internal/tune"
	"github.com/narfs/narfs/remote/storepath"
)

func TestMaterializeEveryCache(t *testing.T) {
	paths := fixturePaths(t)
	for _, cache := range compressionCaches {
		t.Run(cache, func(t *testing.T) {
			dir := filepath.Join(fixtureDir, cache)
			s := openStore(t, dir, "", trustedConfig(t))
			ctx := context.Background()
			n := 0
			for _, fp := range paths {
				if !fileExists(filepath.Join(dir, hashPart(fp.base)+".narinfo")) {
					continue
				}
				n++
				p := mustResolve(t, s, fp.base)
				_, err := s.materialize(ctx, p)
				if err != nil {
					t.Errorf("Materialize %s: %v", fp.base, err)
					continue
				}
				nd := narBytes(t, fp.base)
				want := buildListing(t, nd)
				checkStored(t, s, p, want.Root, nd, fp.base)

				// The listing served afterwards is the NAR's.
				l, err := s.listing(ctx, p)
				if err != nil {
					t.Errorf("Listing %s: %v", fp.base, err)
				} else if got, w := encodeListing(t, l), encodeListing(t, want); got != w {
					t.Errorf("Listing %s after Materialize:\n got %s\nwant %s", fp.base, got, w)
				}

				// OpenFile reads the same bytes as the NAR holds.
				sub, node := firstFile(want)
				if node == nil {
					continue
				}
				f, err := s.openFile(ctx, p, sub)
				if err != nil {
					t.Errorf("OpenFile %s/%s: %v", fp.base, sub, err)
					continue
				}
				got, err := io.ReadAll(f.Reader())
				f.Close()
				if err != nil {
					t.Fatal(err)
				}
				if string(got) != string(nd[node.NarOffset:node.NarOffset+node.Size]) {
					t.Errorf("OpenFile %s/%s: wrong contents", fp.base, sub)
				}
			}
			if n < len(paths)-1 {
				t.Errorf("%s holds only %d of %d fixture paths", cache, n, len(paths))
			}
			st := s.Stats()
			if st.NarGets != int64(n) || st.Fetches != int64(n) || st.Corrupt != 0 {
				t.Errorf("Stats %+v, want %d NAR GETs and fetches", st, n)
			}
			// Everything is in the local cache now: no more NAR GETs.
			for _, fp := range paths {
				if !fileExists(filepath.Join(dir, hashPart(fp.base)+".narinfo")) {
					continue
				}
				if _, err := s.materialize(ctx, mustResolve(t, s, fp.base)); err != nil {
					t.Error(err)
				}
			}
			if got := s.Stats().NarGets; got != int64(n) {
				t.Errorf("NarGets = %d after materializing again, want %d", got, n)
			}
			if got, want := s.Stats().CacheBytes, usageOf(t, dir, paths); got != want {
				t.Errorf("CacheUsage = %d, want the sum of NarSizes %d", got, want)
			}
		})
	}
}

func usageOf(t *testing.T, dir string, paths []fixturePath) int64 {
	var sum int64
	seen := map[string]bool{}
	for _, fp := range paths {
		if !fileExists(filepath.Join(dir, hashPart(fp.base)+".narinfo")) {
			continue
		}
		ni := readNarinfo(t, dir, hashPart(fp.base))
		if k := ni.NarHash.String(); !seen[k] {
			seen[k] = true
			sum += ni.NarSize
		}
	}
	return sum
}

func TestOpenFile(t *testing.T) {
	s := openStore(t, filepath.Join(fixtureDir, "cache-xz"), "", trustedConfig(t))
	ctx := context.Background()

	// A path that is a single file opens with sub "".
	p := mustResolve(t, s, pathFile)
	f, err := s.openFile(ctx, p, "")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(f.Reader())
	f.Close()
	l := buildListing(t, narBytes(t, pathFile))
	if int64(len(got)) != l.Root.Size {
		t.Errorf("OpenFile single file: %d bytes, want %d", len(got), l.Root.Size)
	}

	// A missing sub-path is not found.
	p = mustResolve(t, s, pathTreeSmall)
	if _, err := s.openFile(ctx, p, "no/such/file"); !errors.Is(err, ErrNotFound) {
		t.Errorf("OpenFile of a missing sub-path = %v, want ErrNotFound", err)
	}
	if got := s.Stats().NarGets; got != 2 {
		t.Errorf("NarGets = %d, want 2", got)
	}
}

func TestLookup(t *testing.T) {
	s := openStore(t, filepath.Join(fixtureDir, "cache-zstd"), "", trustedConfig(t))
	ctx := context.Background()
	p := mustResolve(t, s, pathTreeSmall)
	want := buildListing(t, narBytes(t, pathTreeSmall))
	sub, node := firstFile(want)
	n, err := s.Lookup(ctx, p, sub)
	if err != nil {
		t.Fatal(err)
	}
	if n.Size != node.Size || n.Type != nar.TypeRegular {
		t.Errorf("Lookup %s: %+v, want %+v", sub, n, node)
	}
	if n, err := s.Lookup(ctx, p, "/"); err != nil || n.Type != nar.TypeDirectory {
		t.Errorf("Lookup root: %+v, %v", n, err)
	}
	for _, bad := range []string{"nope", sub + "/below-a-file", "nope/deeper"} {
		if _, err := s.Lookup(ctx, p, bad); !errors.Is(err, ErrNotFound) {
			t.Errorf("Lookup %q = %v, want ErrNotFound", bad, err)
		}
	}
	if st := s.Stats(); st.NarGets != 0 {
		t.Errorf("Lookup fetched a NAR: %+v", st)
	}
}

// corruptNoneCache copies cache-none and returns it with the path's NAR.
func corruptNoneCache(t *testing.T, base string) (dir string, narPath string, data []byte) {
	dir = copyCache(t, "cache-none")
	ni := readNarinfo(t, dir, hashPart(base))
	narPath = filepath.Join(dir, ni.URL)
	data, err := os.ReadFile(narPath)
	if err != nil {
		t.Fatal(err)
	}
	return dir, narPath, data
}

// assertNothingKept checks that a failed fetch left no trace in the cache dir.
func assertNothingKept(t *testing.T, s *Core) {
	t.Helper()
	for _, d := range []string{"nar", "tmp"} {
		if names := dirEntries(t, filepath.Join(s.caches[0].cfg.CacheDir, cacheLayout, d)); len(names) != 0 {
			t.Errorf("%s/%s holds %v after a failed fetch", cacheLayout, d, names)
		}
	}
	if u := s.Stats().CacheBytes; u != 0 {
		t.Errorf("CacheUsage = %d after a failed fetch", u)
	}
}

func TestCorruptFileContents(t *testing.T) {
	for _, base := range []string{pathLib, pathTreeSmall} {
		t.Run(base, func(t *testing.T) {
			dir, narPath, data := corruptNoneCache(t, base)
			_, node := firstFile(buildListing(t, data))
			data[node.NarOffset] ^= 1
			putFile(t, narPath, data)
			sum := sha256.Sum256(data)
			actual := "sha256:" + storepath.EncodeNix32(sum[:])

			s := openStore(t, dir, "", trustedConfig(t))
			ctx := context.Background()
			p := mustResolve(t, s, base)
			_, err := s.materialize(ctx, p)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Materialize = %v, want ErrCorrupt", err)
			}
			if msg := err.Error(); !strings.Contains(msg, p.NarInfo.NarHash.String()) || !strings.Contains(msg, actual) {
				t.Errorf("error %q does not name the expected %s and actual %s hash", msg, p.NarInfo.NarHash, actual)
			}
			assertNothingKept(t, s)
			if st := s.Stats(); st.NarGets != 1 || st.Corrupt != 1 || st.Fetches != 0 {
				t.Errorf("Stats %+v, want 1 NAR GET, 1 corrupt, 0 fetches", st)
			}

			// Retrying at once neither downloads again nor succeeds.
			if _, err := s.materialize(ctx, p); !errors.Is(err, ErrCorrupt) {
				t.Errorf("second Materialize = %v, want ErrCorrupt", err)
			}
			if _, err := s.openFile(ctx, p, ""); !errors.Is(err, ErrCorrupt) {
				t.Errorf("OpenFile = %v, want ErrCorrupt", err)
			}
			if got := s.Stats().NarGets; got != 1 {
				t.Errorf("NarGets = %d after retries, want 1 (rejected NARs are remembered)", got)
			}
			assertNothingKept(t, s)
		})
	}
}

func TestCorruptMemoExpires(t *testing.T) {
	dir, narPath, data := corruptNoneCache(t, pathLib)
	good := append([]byte(nil), data...)
	data[len(data)-20] ^= 1
	putFile(t, narPath, data)
	s := openStore(t, dir, "", trustedConfig(t))
	now := time.Now()
	s.local.Failed().Now = func() time.Time { return now }
	ctx := context.Background()
	p := mustResolve(t, s, pathLib)
	if _, err := s.materialize(ctx, p); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Materialize = %v, want ErrCorrupt", err)
	}
	// The cache is repaired; within the memo the old verdict stands.
	putFile(t, narPath, good)
	if _, err := s.materialize(ctx, p); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Materialize within the memo = %v, want ErrCorrupt", err)
	}
	now = now.Add(tune.CorruptMemo + time.Second)
	_, err := s.materialize(ctx, p)
	if err != nil {
		t.Fatalf("Materialize after the memo expired: %v", err)
	}
	checkStored(t, s, p, buildListing(t, good).Root, good, pathLib)
	if st := s.Stats(); st.NarGets != 2 || st.Fetches != 1 || st.Corrupt != 1 {
		t.Errorf("Stats %+v, want 2 NAR GETs, 1 fetch, 1 corrupt", st)
	}
}

func TestTruncatedCompressedNAR(t *testing.T) {
	dir := copyCache(t, "cache-zstd")
	ni := readNarinfo(t, dir, hashPart(pathTreeSmall))
	f := filepath.Join(dir, ni.URL)
	data, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	putFile(t, f, data[:len(data)/2])
	s := openStore(t, dir, "", trustedConfig(t))
	p := mustResolve(t, s, pathTreeSmall)
	if _, err := s.materialize(context.Background(), p); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Materialize of a truncated .nar.zst = %v, want ErrCorrupt", err)
	}
	assertNothingKept(t, s)
}

func TestTruncatedNAR(t *testing.T) {
	dir, narPath, data := corruptNoneCache(t, pathTreeSmall)
	putFile(t, narPath, data[:len(data)-8])
	s := openStore(t, dir, "", trustedConfig(t))
	p := mustResolve(t, s, pathTreeSmall)
	if _, err := s.materialize(context.Background(), p); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Materialize of a truncated NAR = %v, want ErrCorrupt", err)
	}
	assertNothingKept(t, s)
}

func TestNARLongerThanNarSize(t *testing.T) {
	for name, extra := range map[string][]byte{
		"zeros":   make([]byte, 8),
		"garbage": []byte("trailing garbage after the NAR"),
		"big":     make([]byte, 1<<20),
	} {
		t.Run(name, func(t *testing.T) {
			dir, narPath, data := corruptNoneCache(t, pathLib)
			putFile(t, narPath, append(data, extra...))
			s := openStore(t, dir, "", trustedConfig(t))
			p := mustResolve(t, s, pathLib)
			if _, err := s.materialize(context.Background(), p); !errors.Is(err, ErrCorrupt) {
				t.Errorf("Materialize of a NAR with trailing bytes = %v, want ErrCorrupt", err)
			}
			assertNothingKept(t, s)
			if st := s.Stats(); st.NarBytes > int64(len(data))+64<<10 {
				t.Errorf("read %d NAR bytes of a %d byte NAR; the excess should stop the download", st.NarBytes, len(data))
			}
		})
	}
}

func TestSignedNarinfoWithWrongNarHash(t *testing.T) {
	dir := copyCache(t, "cache-none")
	ni := readNarinfo(t, dir, hashPart(pathLib))
	other := readNarinfo(t, dir, hashPart(pathApp))
	ni.NarHash = other.NarHash
	resign(t, ni)
	writeNarinfo(t, dir, ni)

	s := openStore(t, dir, "", trustedConfig(t))
	p := mustResolve(t, s, pathLib) // the signature is valid
	_, err := s.materialize(context.Background(), p)
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Materialize = %v, want ErrCorrupt", err)
	}
	if !strings.Contains(err.Error(), other.NarHash.String()) {
		t.Errorf("error %q does not name the expected hash", err)
	}
	assertNothingKept(t, s)
}

func TestSignedNarinfoWithWrongNarSize(t *testing.T) {
	for name, delta := range map[string]int64{"smaller": -8, "larger": 8} {
		t.Run(name, func(t *testing.T) {
			dir := copyCache(t, "cache-none")
			ni := readNarinfo(t, dir, hashPart(pathLib))
			ni.NarSize += delta
			resign(t, ni)
			writeNarinfo(t, dir, ni)
			s := openStore(t, dir, "", trustedConfig(t))
			p := mustResolve(t, s, pathLib)
			if _, err := s.materialize(context.Background(), p); !errors.Is(err, ErrCorrupt) {
				t.Errorf("Materialize = %v, want ErrCorrupt", err)
			}
			assertNothingKept(t, s)
		})
	}
}

func TestMissingNAR(t *testing.T) {
	dir, narPath, _ := corruptNoneCache(t, pathLib)
	removeFile(t, narPath)
	s := openStore(t, dir, "", trustedConfig(t))
	p := mustResolve(t, s, pathLib)
	ctx := context.Background()
	_, err := s.materialize(ctx, p)
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("Materialize with the NAR missing = %v, want ErrNotFound", err)
	}
	if errors.Is(err, ErrCorrupt) {
		t.Errorf("a missing NAR is not corruption: %v", err)
	}
	if _, err := s.openFile(ctx, p, "lib/libnarfs.so"); err == nil {
		t.Error("OpenFile succeeded without a NAR")
	}
	assertNothingKept(t, s)
	// A missing NAR is not remembered as corrupt: once it appears, it is
	// served.
	putFile(t, narPath, narBytes(t, pathLib))
	if _, err := s.materialize(ctx, p); err != nil {
		t.Errorf("Materialize after the NAR appeared: %v", err)
	}
}

func TestMalformedNAR(t *testing.T) {
	dir, narPath, data := corruptNoneCache(t, pathLib)
	bad := append([]byte(nil), data...)
	copy(bad[8:], "not-a-NAR") // the magic's string contents
	setNARFile(t, dir, pathLib, narPath, bad)
	s := openStore(t, dir, "", Config{}) // hashes match the garbage: only the parser objects
	p := mustResolve(t, s, pathLib)
	if _, err := s.materialize(context.Background(), p); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Materialize of a malformed NAR = %v, want ErrCorrupt", err)
	}
	assertNothingKept(t, s)
}

// setNARFile writes data as the path's NAR and updates its narinfo to match
// (unsigned).
func setNARFile(t *testing.T, dir, base, narPath string, data []byte) {
	t.Helper()
	ni := readNarinfo(t, dir, hashPart(base))
	rel, err := filepath.Rel(dir, narPath)
	if err != nil {
		t.Fatal(err)
	}
	setNAR(ni, filepath.ToSlash(rel), data)
	ni.Sigs = nil
	writeNarinfo(t, dir, ni)
	putFile(t, narPath, data)
}

func TestOpenFileStaysInsideThePath(t *testing.T) {
	// OpenFile serves regular files of the NAR only: not the local cache's
	// bookkeeping ("../meta"), not what a symlink in the NAR points to on
	// this host (abs-link -> /etc/hostname).
	ctx := context.Background()
	s := openStore(t, filepath.Join(fixtureDir, "cache-none"), "", trustedConfig(t))
	p := mustResolve(t, s, pathTreeSmall)
	for _, sub := range []string{
		"../meta", "../listing.json", "../../../../../../../../etc/hostname",
		"abs-link", "link-to-file", "link-to-dir/d3/up3", "dangling", "d1", "./plain.txt/..",
	} {
		f, err := s.openFile(ctx, p, sub)
		if err == nil {
			f.Close()
			t.Errorf("OpenFile(%q) opened %v at %d", sub, f.File.Name(), f.Base)
		} else if !errors.Is(err, ErrNotFound) {
			t.Errorf("OpenFile(%q) = %v, want ErrNotFound", sub, err)
		}
	}
	if f, err := s.openFile(ctx, p, "plain.txt"); err != nil {
		t.Errorf("OpenFile(plain.txt): %v", err)
	} else {
		f.Close()
	}
	// A store path that is a symlink is not a file either.
	if _, err := s.openFile(ctx, mustResolve(t, s, pathLink), ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("OpenFile of a symlink path = %v, want ErrNotFound", err)
	}
}

// TestStoredLayout: a NAR with large files deep inside (offsets beyond
// their sizes), small files between them, an empty file and a large file
// at the very end: every file reads back from the blob or its own file.
func TestStoredLayout(t *testing.T) {
	var buf bytes.Buffer
	w := nar.NewWriter(&buf)
	w.Directory()
	fill := func(n int, seed byte) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = seed + byte(i*7)
		}
		return b
	}
	for i, size := range []int{3 << 20, 10, 0, MaxRead, MaxRead - 1, 5000, 2<<20 + 3} {
		w.Entry(string(rune('a' + i)))
		w.File(i%2 == 1, int64(size), bytes.NewReader(fill(size, byte(i))))
	}
	w.EndDirectory()
	w.Close()
	data := buf.Bytes()
	dir := copyCache(t, "cache-none")
	narPath := filepath.Join(dir, "nar", "layout.nar")
	setNARFile(t, dir, pathLib, narPath, data)
	ni := readNarinfo(t, dir, hashPart(pathLib))
	resign(t, ni)
	writeNarinfo(t, dir, ni)
	s := openStore(t, dir, "", trustedConfig(t))
	p := mustResolve(t, s, pathLib)
	if _, err := s.materialize(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	checkStored(t, s, p, buildListing(t, data).Root, data, pathLib)
	// Large files are files of their own (passthrough needs offset 0).
	f, _, err := s.openVerified(context.Background(), p, "g")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if !f.Own() {
		t.Error("a 2 MiB file is read from the blob")
	}
}
