package remote

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/remote/internal/content"
	"github.com/narfs/narfs/remote/narinfo"
	"github.com/narfs/narfs/remote/stats"
	"github.com/narfs/narfs/remote/storepath"
)

// fixtureDir holds real Nix 2.8 binary caches (see nar/testdata/gen-fixtures.sh).
const fixtureDir = "../nar/testdata/nix"

// compressionCaches are the fixture caches signed by narfs-test-1, one per
// compression Nix 2.8 writes.
var compressionCaches = []string{
	"cache-none", "cache-xz", "cache-xz-parallel", "cache-zstd",
	"cache-bzip2", "cache-gzip", "cache-br",
}

// Fixture store paths by role (nar/testdata/nix/paths.txt).
const (
	pathTree      = "qs0zjl4dzw8qb6fgjz5vbgy365n6iwr8-tree"           // ca, 11 MB
	pathTreeSmall = "14lgl3x038jkwcgv2y8x0wia7gsicsj9-tree-small"     // ca
	pathFile      = "zjapjaaaac5rxx8jbax88asf2gd8fnpw-single-file"    // ca
	pathExec      = "h4smbv7llayd92x338isrx5sksbhkz18-single-exec"    // ca
	pathLink      = "hp418g34hrxnlc761m7yq8ms477ziv0d-single-link"    // ca
	pathLib       = "jq3hgqjn0hn0wmnld235n75qdiv5y6yk-narfs-test-lib" // ia
	pathApp       = "ymydngcp0syr2bpvigprvim861rmkrvc-narfs-test-app" // ia
)

type fixturePath struct {
	base string
	ca   bool
}

// fixturePaths reads paths.txt.
func fixturePaths(t testing.TB) []fixturePath {
	t.Helper()
	f, err := os.Open(filepath.Join(fixtureDir, "paths.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ps []fixturePath
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		base, kind, _ := strings.Cut(line, " ")
		ps = append(ps, fixturePath{base: base, ca: kind == "ca"})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(ps) == 0 {
		t.Fatal("paths.txt lists no paths")
	}
	return ps
}

// copyCache copies a fixture cache into a temporary directory that the test
// may modify.
func copyCache(t testing.TB, name string) string {
	t.Helper()
	return copyDir(t, filepath.Join(fixtureDir, name))
}

// copyDir copies a directory tree into a temporary directory.
func copyDir(t testing.TB, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), filepath.Base(src))
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	// CopyFS keeps read-only modes; tests rewrite files.
	err := filepath.WalkDir(dst, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.Chmod(p, 0o755)
		}
		return os.Chmod(p, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func testSecretKey(t testing.TB) narinfo.SecretKey {
	t.Helper()
	data, err := os.ReadFile("../nar/testdata/keys/narfs-test-1.sk")
	if err != nil {
		t.Fatal(err)
	}
	k, err := narinfo.ParseSecretKey(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func testPublicKeys(t testing.TB) []narinfo.PublicKey {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(fixtureDir, "public-key.txt"))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := narinfo.ParsePublicKeys(string(data))
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// trustedConfig trusts the fixtures' signing key and requires signatures.
func trustedConfig(t testing.TB) Config {
	return Config{TrustedKeys: testPublicKeys(t), RequireSigs: true, CacheDir: t.TempDir(), Logger: quietLogger()}
}

// byRanges is trustedConfig for tests of what reads of indexed paths
// fetch: the fixtures' paths are small, and would be fetched whole.
func byRanges(t testing.TB) Config {
	cfg := trustedConfig(t)
	cfg.IndexedWholeMax = -1
	return cfg
}

// openStore opens the cache in dir as file://dir (plus query, if any).
func openStore(t testing.TB, dir, query string, cfg Config) *Core {
	t.Helper()
	if cfg.CacheDir == "" {
		cfg.CacheDir = t.TempDir()
	}
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	u := "file://" + abs
	if query != "" {
		u += "?" + query
	}
	s, err := openOne(context.Background(), u, cfg)
	if err != nil {
		t.Fatalf("Open %s: %v", u, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func mustResolve(t testing.TB, s *Core, base string) *PathInfo {
	t.Helper()
	p, err := s.Resolve(context.Background(), base)
	if err != nil {
		t.Fatalf("Resolve %s: %v", base, err)
	}
	return p
}

func readNarinfo(t testing.TB, dir, hash string) *narinfo.NarInfo {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, hash+".narinfo"))
	if err != nil {
		t.Fatal(err)
	}
	ni, err := narinfo.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	return ni
}

func writeNarinfo(t testing.TB, dir string, ni *narinfo.NarInfo) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, ni.StorePath.Hash+".narinfo"), ni.Marshal(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// resign replaces a narinfo's signatures by a valid one from the test key,
// so that whatever the test changed is vouched for.
func resign(t testing.TB, ni *narinfo.NarInfo) {
	t.Helper()
	sig, err := testSecretKey(t).Sign(ni)
	if err != nil {
		t.Fatal(err)
	}
	ni.Sigs = []string{sig}
}

// setNAR points a narinfo at an uncompressed NAR file and updates its
// hashes and sizes to match it.
func setNAR(ni *narinfo.NarInfo, url string, data []byte) {
	sum := sha256.Sum256(data)
	h := storepath.Hash{Algo: "sha256", Digest: sum[:]}
	ni.URL = url
	ni.Compression = "none"
	ni.FileHash = &h
	ni.FileSize = int64(len(data))
	ni.NarHash = h
	ni.NarSize = int64(len(data))
}

func hashPartOf(base string) string { return hashPart(base) }

// narBytes returns the uncompressed NAR of a fixture path (from cache-none).
func narBytes(t testing.TB, base string) []byte {
	t.Helper()
	dir := filepath.Join(fixtureDir, "cache-none")
	ni := readNarinfo(t, dir, hashPartOf(base))
	data, err := os.ReadFile(filepath.Join(dir, ni.URL))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func buildListing(t testing.TB, narData []byte) *nar.Listing {
	t.Helper()
	l, err := nar.BuildListing(bytes.NewReader(narData))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func encodeListing(t testing.TB, l *nar.Listing) string {
	t.Helper()
	var b bytes.Buffer
	if err := l.Encode(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// firstFile returns the slash path and node of the first non-empty regular
// file of a listing, in name order.
func firstFile(l *nar.Listing) (string, *nar.Node) {
	var walk func(prefix string, n *nar.Node) (string, *nar.Node)
	walk = func(prefix string, n *nar.Node) (string, *nar.Node) {
		if n.Type == nar.TypeRegular && n.Size > 0 {
			return prefix, n
		}
		names := make([]string, 0, len(n.Entries))
		for name := range n.Entries {
			names = append(names, name)
		}
		slices.Sort(names)
		for _, name := range names {
			if p, c := walk(strings.TrimPrefix(prefix+"/"+name, "/"), n.Entries[name]); c != nil {
				return p, c
			}
		}
		return "", nil
	}
	return walk("", l.Root)
}

// dirEntries lists the names inside dir (nil when it does not exist).
func dirEntries(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func putFile(t testing.TB, p string, data []byte) {
	t.Helper()
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func copyFile(t testing.TB, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	putFile(t, dst, data)
}

func removeFile(t testing.TB, p string) {
	t.Helper()
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// hashPart extracts the hash part of a base name without validating it.
func hashPart(base string) string {
	h, _, _ := strings.Cut(base, "-")
	return h
}

// checkStored compares what the store serves of a fetched path with the
// listing of its NAR: the verified listing must be it, and every regular
// file read through OpenVerified must hold the bytes at its offset in the
// NAR.
func checkStored(t testing.TB, s *Core, p *PathInfo, n *nar.Node, narData []byte, name string) {
	t.Helper()
	ctx := context.Background()
	l, err := s.VerifiedListing(ctx, p)
	if err != nil {
		t.Errorf("%s: verified listing: %v", name, err)
		return
	}
	if !nar.SameTree(l.Root, n) {
		t.Errorf("%s: verified listing differs from the NAR's", name)
		return
	}
	var walk func(sub string, n *nar.Node)
	walk = func(sub string, n *nar.Node) {
		switch n.Type {
		case nar.TypeDirectory:
			for c, e := range n.Entries {
				if sub == "" {
					walk(c, e)
				} else {
					walk(sub+"/"+c, e)
				}
			}
		case nar.TypeRegular:
			f, vn, err := s.openVerified(ctx, p, sub)
			if err != nil {
				t.Errorf("%s/%s: %v", name, sub, err)
				return
			}
			defer f.Close()
			got, err := io.ReadAll(f.Reader())
			if err != nil {
				t.Errorf("%s/%s: %v", name, sub, err)
				return
			}
			if vn.Size != n.Size || vn.Executable != n.Executable {
				t.Errorf("%s/%s: node %+v, want %+v", name, sub, vn, n)
			}
			want := narData[n.NarOffset : n.NarOffset+n.Size]
			if !bytes.Equal(got, want) {
				t.Errorf("%s/%s: contents differ from the NAR (sha256 %x, want %x)", name, sub, sha256.Sum256(got), sha256.Sum256(want))
			}
		}
	}
	walk("", n)
}

// openOne opens one cache (Nix syntax) as a Core of its own.
func openOne(ctx context.Context, storeURL string, cfg Config) (*Core, error) {
	return Open(ctx, []string{storeURL}, cfg)
}

// The old per-cache API, for tests: each goes to p's cache.

// materialize makes sure the store path's NAR is fetched, verified and
// extracted into the local cache and returns the local path of its root,
// for inspection: the entry is not pinned.
func (g *Core) materialize(ctx context.Context, p *PathInfo) (string, error) {
	return g.of(p).materialize(ctx, p)
}

func (c *cache) materialize(ctx context.Context, p *PathInfo) (string, error) {
	ctx, cancel := c.opContext(ctx)
	defer cancel()
	e, err := c.entry(ctx, p)
	if err != nil {
		return "", err
	}
	defer e.Release()
	return e.Root(), nil
}

// listing is the best known tree of p (see cache.listing).
func (g *Core) listing(ctx context.Context, p *PathInfo) (*nar.Listing, error) {
	kl, err := g.of(p).listing(ctx, p, true)
	if err != nil {
		return nil, err
	}
	return kl.Listing, nil
}

func (g *Core) openFile(ctx context.Context, p *PathInfo, sub string) (*content.Span, error) {
	f, _, err := g.of(p).openVerified(ctx, p, sub)
	return f, err
}

func (g *Core) openVerified(ctx context.Context, p *PathInfo, sub string) (*content.Span, *nar.Node, error) {
	return g.of(p).openVerified(ctx, p, sub)
}

func (g *Core) openChunked(ctx context.Context, p *PathInfo, sub string) (*content.Chunked, error) {
	return g.of(p).openChunked(ctx, p, sub)
}

func (g *Core) prefetchIndexed(ctx context.Context, p *PathInfo) error {
	return g.of(p).prefetchIndexed(ctx, p)
}

// counts is c's upstream counters since Open.
func (c *cache) counts() stats.Stats { return c.up.Counters().Snapshot() }

// mustResolveIn resolves base in cache c alone.
func mustResolveIn(t testing.TB, c *cache, base string) *PathInfo {
	t.Helper()
	p, err := c.resolve(context.Background(), base)
	if err != nil {
		t.Fatalf("Resolve %s: %v", base, err)
	}
	return p
}
