package nixdaemon

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/remote"
	"github.com/narfs/narfs/remote/narinfo"
	"github.com/narfs/narfs/remote/storepath"
)

// genPath is one generated store path and what the daemon must report.
type genPath struct {
	path, narHash, ref, sig string
	narSize                 uint64
}

// genCache writes a file:// cache of n one-file paths into dir, each but
// the first referring to the previous one, signed by the fixtures' key.
func genCache(t testing.TB, dir string, n int) []genPath {
	t.Helper()
	skData, err := os.ReadFile("../../nar/testdata/keys/narfs-test-1.sk")
	if err != nil {
		t.Fatal(err)
	}
	sk, err := narinfo.ParseSecretKey(strings.TrimSpace(string(skData)))
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, "nar"), 0o755)
	if err := os.WriteFile(filepath.Join(dir, "nix-cache-info"), []byte("StoreDir: /nix/store\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := make([]genPath, n)
	var prev storepath.StorePath
	for i := range out {
		seed := sha256.Sum256(fmt.Appendf(nil, "gen-%d", i))
		sp, err := storepath.Parse(storepath.EncodeNix32(seed[:20]) + fmt.Sprintf("-gen-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		w := nar.NewWriter(&buf)
		contents := fmt.Sprintf("path %d\n", i)
		w.File(i%2 == 1, int64(len(contents)), strings.NewReader(contents))
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(buf.Bytes())
		h := storepath.Hash{Algo: "sha256", Digest: sum[:]}
		url := "nar/" + storepath.EncodeNix32(sum[:]) + ".nar"
		ni := &narinfo.NarInfo{StorePath: sp, URL: url, Compression: "none", FileHash: &h, FileSize: int64(buf.Len()),
			NarHash: h, NarSize: int64(buf.Len())}
		g := genPath{path: sp.Abs("/nix/store"), narHash: hex.EncodeToString(sum[:]), narSize: uint64(buf.Len())}
		if i > 0 {
			ni.References = []storepath.StorePath{prev}
			g.ref = prev.Abs("/nix/store")
		}
		if g.sig, err = sk.Sign(ni); err != nil {
			t.Fatal(err)
		}
		ni.Sigs = []string{g.sig}
		if err := os.WriteFile(filepath.Join(dir, url), buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, sp.Hash+".narinfo"), ni.Marshal(), 0o644); err != nil {
			t.Fatal(err)
		}
		out[i], prev = g, sp
	}
	return out
}

// TestConcurrentClientsCore: 32 clients at once, over the real core on a
// cache of 300 signed paths, each ask QueryPathInfo of every path (in its
// own order), IsValidPath of every third, QueryValidPaths of all in
// batches with absent paths mixed in, and QueryPathFromHashPart of some:
// every answer is the signed narinfo's, whatever the others ask (the
// memory of the same at 10,000 paths is make bench's measure 21).
func TestConcurrentClientsCore(t *testing.T) {
	const nPaths, nClients, batch = 300, 32, 64
	dir := t.TempDir()
	paths := genCache(t, dir, nPaths)
	keys := fixtureKeys(t)
	core, err := remote.Open(context.Background(), []string{"file://" + dir},
		remote.Config{TrustedKeys: keys, RequireSigs: true, CacheDir: t.TempDir(), Logger: testLogger(t), Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { core.Close() })
	sock := startServer(t, &Server{Store: NewCore(core, keys), Log: testLogger(t)})

	var wg sync.WaitGroup
	errs := make(chan error, nClients)
	for ci := range nClients {
		wg.Go(func() {
			cl := dial(goroutineTB{t, errs}, sock, ver(34+uint64(ci%5)))
			fail := func(format string, args ...any) {
				errs <- fmt.Errorf("client %d: "+format, append([]any{ci}, args...)...)
			}
			for k := range paths {
				p := paths[(ci*37+k)%nPaths]
				info, ok, e := cl.queryPathInfo(p.path)
				var refs []string
				if p.ref != "" {
					refs = []string{p.ref}
				}
				if !ok || string(info.NarHash) != p.narHash || info.NarSize != p.narSize ||
					!slices.Equal(info.References, refs) || !slices.Equal(info.Sigs, []string{p.sig}) {
					fail("QueryPathInfo(%s) = %+v %v %q", p.path, info, ok, e)
					return
				}
				if k%3 == 0 {
					cl.send(new(msg).u64(uint64(OpIsValidPath)).str(p.path))
					if _, ok := cl.result(); !ok || cl.u64() != 1 {
						fail("IsValidPath(%s) not valid", p.path)
						return
					}
				}
				if k%50 == 0 {
					h := strings.TrimPrefix(p.path, "/nix/store/")[:32]
					cl.send(new(msg).u64(uint64(OpQueryPathFromHashPart)).str(h))
					if _, ok := cl.result(); !ok {
						fail("QueryPathFromHashPart(%s) failed", h)
						return
					}
					if got := cl.str(); got != p.path {
						fail("QueryPathFromHashPart(%s) = %q", h, got)
						return
					}
				}
			}
			for start := 0; start < nPaths; start += batch {
				var ask, want []string
				for _, p := range paths[start:min(start+batch, nPaths)] {
					ask, want = append(ask, p.path), append(want, p.path)
				}
				absent := sha256.Sum256(fmt.Appendf(nil, "absent-%d-%d", ci, start))
				ask = append(ask, "/nix/store/"+storepath.EncodeNix32(absent[:20])+"-absent")
				cl.send(new(msg).u64(uint64(OpQueryValidPaths)).strs(ask...).u64(0))
				if _, ok := cl.result(); !ok {
					fail("QueryValidPaths failed")
					return
				}
				slices.Sort(want)
				if got := cl.strs(); !slices.Equal(got, want) {
					fail("QueryValidPaths of %d paths and one absent = %d paths", len(want), len(got))
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
