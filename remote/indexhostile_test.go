package remote

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/remote/chunkindex"
	"github.com/narfs/narfs/remote/internal/tune"
	"github.com/narfs/narfs/remote/narinfo"
	"github.com/narfs/narfs/remote/stats"
	"github.com/narfs/narfs/remote/storepath"
)

// toLayout2 rewrites an indexed cache the way narfs push writes it now:
// the narinfo without NarfsIndex lines (and re-signed), the index in its
// alias object with its signature in its header, nix-cache-info saying
// the cache keeps aliases.
func toLayout2(t *testing.T, dir, hash string, key narinfo.SecretKey) {
	t.Helper()
	ni := readNarinfo(t, dir, hash)
	url, _, ok, err := chunkindex.Location(ni)
	if !ok || err != nil {
		t.Fatalf("no layout-1 index: %v", err)
	}
	payload, err := os.ReadFile(filepath.Join(dir, url))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{chunkindex.KeyURL, chunkindex.KeySize, chunkindex.KeySig} {
		ni.Set(k)
	}
	resign(t, ni)
	writeNarinfo(t, dir, ni)
	os.Remove(filepath.Join(dir, url))
	sealAlias(t, dir, ni, payload, key)
}

// sealAlias writes payload as the layout-2 alias of the narinfo's path,
// signed by key, and announces aliases in nix-cache-info.
func sealAlias(t *testing.T, dir string, ni *narinfo.NarInfo, payload []byte, key narinfo.SecretKey) {
	t.Helper()
	obj, err := chunkindex.Seal(payload, []string{chunkindex.SignPayload(key, ni, payload)})
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, "index"), 0o755)
	putFile(t, filepath.Join(dir, chunkindex.AliasKey(ni.StorePath.Hash)), obj)
	info, _ := os.ReadFile(filepath.Join(dir, "nix-cache-info"))
	if !bytes.Contains(info, []byte(chunkindex.CacheInfoKey)) {
		putFile(t, filepath.Join(dir, "nix-cache-info"), append(info, chunkindex.CacheInfoKey+": 1\n"...))
	}
}

// logBuffer collects a Store's log.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

// TestIndexedLayout2Reads: a path indexed the way narfs writes it now
// (index in its alias object only) is read by its index, every file
// matching the NAR; the layout-1 tests (indexed_test.go) are the old way.
func TestIndexedLayout2Reads(t *testing.T) {
	c := makeIndexedCache(t, pathTree, "zstd")
	toLayout2(t, c.dir, hashPart(pathTree), testSecretKey(t))
	s := openStore(t, c.dir, "", byRanges(t))
	p := mustResolve(t, s, pathTree)
	if !s.caches[0].up.IndexesDeclared() {
		t.Fatal("nix-cache-info's alias line not seen")
	}
	for sub, n := range filesOf(c.listing) {
		got, err := readChunked(t, s, p, sub)
		if err != nil {
			t.Fatalf("%s: %v", sub, err)
		}
		if !bytes.Equal(got, contentsOf(c, n)) {
			t.Fatalf("%s differs", sub)
		}
	}
	if !s.of(p).indexVerified(p) {
		t.Error("IndexVerified false for a path read by its index")
	}
	if st := s.Stats(); st.NarGets == 0 || st.Fetches != 0 {
		t.Errorf("not read by chunks: %+v", st)
	}
}

// forgedCAPath makes the content-addressed path rec-sha512 of cache-ca
// (CA fixed:r:sha512: its NarHash is checked only by hashing the NAR)
// point at a forged NAR: unsigned narinfo lines (URL, Compression,
// FileSize, FileHash, NarHash) name a forged chunked object, and a
// matching index signed by an attacker's key claiming a trusted key's
// name, in layout 1 or 2. It returns the forged file's path in the NAR and
// the forged bytes.
func forgedCAPath(t *testing.T, layout int) (dir, base, sub string, evil []byte) {
	t.Helper()
	dir = copyDir(t, caCacheDir)
	base = caPath(t, "rec-sha512")
	hash := hashPart(base)
	ni := readNarinfo(t, dir, hash)
	good, err := os.ReadFile(filepath.Join(dir, ni.URL))
	if err != nil {
		t.Fatal(err)
	}
	sub, evil = "data", []byte("evil\n")
	forged := bytes.Replace(good, []byte("data\n"), evil, 1)
	if bytes.Equal(forged, good) {
		t.Fatal("fixture has no file with data\\n")
	}
	l := buildListing(t, forged)
	ends, err := chunkindex.Plan(l, int64(len(forged)))
	if err != nil {
		t.Fatal(err)
	}
	var obj bytes.Buffer
	b, err := chunkindex.NewBuilder(&obj, ends, "zstd", zstd.SpeedDefault)
	if err != nil {
		t.Fatal(err)
	}
	b.Write(forged)
	chunks, size, fh, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(forged)
	ni.NarHash = storepath.Hash{Algo: "sha256", Digest: sum[:]}
	ni.URL, ni.Compression, ni.FileSize, ni.FileHash = "nar/forged.nar.zst", "zstd", size, &fh
	putFile(t, filepath.Join(dir, ni.URL), obj.Bytes())
	x := &chunkindex.Index{StorePath: ni.StorePath.Abs(storepath.DefaultStoreDir), NarHash: ni.NarHash, NarSize: ni.NarSize,
		URL: ni.URL, Compression: "zstd", FileSize: size, FileHash: fh, Chunks: chunks, Listing: l}
	payload, err := x.Encode()
	if err != nil {
		t.Fatal(err)
	}
	_, priv, _ := ed25519.GenerateKey(nil)
	attacker := narinfo.SecretKey{Name: testSecretKey(t).Name, Key: priv}
	switch layout {
	case 1:
		os.MkdirAll(filepath.Join(dir, "index"), 0o755)
		putFile(t, filepath.Join(dir, "index", "forged.nidx"), payload)
		ni.Set(chunkindex.KeyURL, "index/forged.nidx")
		ni.Set(chunkindex.KeySize, itoa(len(payload)))
		ni.Set(chunkindex.KeySig, chunkindex.Sign(attacker, ni, payload))
		putFile(t, filepath.Join(dir, chunkindex.AliasKey(hash)), payload)
	case 2:
		sealAlias(t, dir, ni, payload, attacker)
	}
	writeNarinfo(t, dir, ni)
	return dir, base, sub, evil
}

// TestIndexTrustAllForgedIndexRefused: in trust-all mode (require-sigs
// off, or trusted=1) a content-addressed path whose unsigned narinfo
// lines and index alias point at a forged object with a matching forged
// index is never served from it: the index is ignored (it is signed by no
// trusted key), which is logged, and the forged NAR read whole fails its
// content address (issue 19, class 1).
func TestIndexTrustAllForgedIndexRefused(t *testing.T) {
	for _, layout := range []int{1, 2} {
		for _, mode := range []string{"require-sigs=false", "trusted=1"} {
			t.Run(itoa(layout)+"/"+mode, func(t *testing.T) {
				dir, base, sub, evil := forgedCAPath(t, layout)
				var log logBuffer
				cfg := trustedConfig(t)
				cfg.Logger = log.logger()
				query := ""
				if mode == "trusted=1" {
					query = "trusted=1"
				} else {
					cfg.RequireSigs = false
				}
				s := openStore(t, dir, query, cfg)
				p := mustResolve(t, s, base)
				got, err := readChunked(t, s, p, sub)
				if err == nil || bytes.Contains(got, evil) {
					t.Fatalf("forged index used: %q, %v", got, err)
				}
				if !errors.Is(err, errNotIndexed) {
					t.Errorf("OpenChunked: %v, want errNotIndexed", err)
				}
				if !strings.Contains(log.String(), "chunk index") || !strings.Contains(log.String(), "untrusted") {
					t.Errorf("the refused index was not logged:\n%s", log.String())
				}
				f, _, err := s.openVerified(context.Background(), p, sub)
				if err == nil {
					b, _ := io.ReadAll(io.NewSectionReader(f.File, f.Base, f.Size))
					f.Close()
					t.Fatalf("the forged NAR was served whole: %q", b)
				}
			})
		}
	}
}

// TestIndexInflatedSizeBounded: indexes of a small path that point at
// large junk (layout 1: a NarfsIndexSize of 16 MiB; layout 2: an alias of
// 16 MiB) are refused after reading no more than what a NAR of that size
// can need, from a server that sends no Content-Length (issue 19, class 4).
func TestIndexInflatedSizeBounded(t *testing.T) {
	junk := make([]byte, 16<<20)
	for i := range junk {
		junk[i] = byte(i*7 + i>>9)
	}
	for _, layout := range []int{1, 2} {
		t.Run(itoa(layout), func(t *testing.T) {
			c := makeIndexedCache(t, pathTreeSmall, "zstd")
			hash := hashPart(pathTreeSmall)
			if layout == 2 {
				toLayout2(t, c.dir, hash, testSecretKey(t))
				putFile(t, filepath.Join(c.dir, chunkindex.AliasKey(hash)), append([]byte("narfs-index 2\nSig: x:y\n\n\x28\xb5\x2f\xfd"), junk...))
			} else {
				putFile(t, filepath.Join(c.dir, "index", "x.nidx"), junk)
				ni := readNarinfo(t, c.dir, hash)
				ni.Set(chunkindex.KeySize, itoa(len(junk)))
				writeNarinfo(t, c.dir, ni)
			}
			files := http.FileServer(http.Dir(c.dir))
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if !strings.HasPrefix(r.URL.Path, "/index/") {
					files.ServeHTTP(w, r)
					return
				}
				// Streamed, no Content-Length: only reading tells the size.
				data, err := os.ReadFile(filepath.Join(c.dir, r.URL.Path))
				if err != nil {
					http.NotFound(w, r)
					return
				}
				for len(data) > 0 {
					n := min(len(data), 64<<10)
					if _, err := w.Write(data[:n]); err != nil {
						return
					}
					w.(http.Flusher).Flush()
					data = data[n:]
				}
			}))
			t.Cleanup(srv.Close)
			s := openHTTPStore(t, srv.URL, trustedConfig(t))
			p := mustResolve(t, s, pathTreeSmall)
			if _, err := s.listing(context.Background(), p); err != nil {
				t.Fatal(err)
			}
			if kl, _ := known(s.caches[0].listings, hash); kl != nil && kl.index() != nil {
				t.Fatal("junk accepted as an index")
			}
			// Layout 2's alias is asked for with the narinfo, before its
			// NarSize is known: at most aliasMaxObject then.
			bound := chunkindex.ObjectBound(p.NarInfo.NarSize)
			if layout == 2 {
				bound = max(bound, tune.AliasMaxObject)
			}
			if got := s.Stats().Upstream[stats.KindIndex].Bytes; got > bound+1 {
				t.Errorf("read %d bytes of index objects for a NAR of %d bytes; bound %d", got, p.NarInfo.NarSize, bound)
			}
		})
	}
}

// TestIndexHangingKeysFallBack: a cache that never answers for index
// objects (narinfo, .ls and NAR answer) costs a lookup a share of its
// deadline, not all of it: the listing and a read succeed within
// --timeout, the stock way, and the next lookups do not wait again
// (issue 19, class 6).
func TestIndexHangingKeysFallBack(t *testing.T) {
	for _, layout := range []int{1, 2} {
		t.Run(itoa(layout), func(t *testing.T) {
			c := makeIndexedCache(t, pathTree, "zstd")
			hash := hashPart(pathTree)
			if layout == 2 {
				toLayout2(t, c.dir, hash, testSecretKey(t))
			} else {
				withAliases(t, c, hash, nil)
			}
			// The stock way needs a .ls or the NAR: give it the .ls.
			ls, err := os.ReadFile(filepath.Join(fixtureDir, "cache-none", hash+".ls"))
			if err != nil {
				t.Fatal(err)
			}
			putFile(t, filepath.Join(c.dir, hash+".ls"), ls)
			release := make(chan struct{})
			files := http.FileServer(http.Dir(c.dir))
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if strings.HasPrefix(r.URL.Path, "/index/") {
					select {
					case <-release:
					case <-r.Context().Done():
					}
					return
				}
				files.ServeHTTP(w, r)
			}))
			t.Cleanup(srv.Close)
			t.Cleanup(func() { close(release) })
			cfg := byRanges(t)
			cfg.Timeout = 3 * time.Second
			s := openHTTPStore(t, srv.URL, cfg)
			p := mustResolve(t, s, pathTree)
			l, err := s.listing(context.Background(), p)
			if err != nil {
				t.Fatalf("listing with index keys hanging: %v", err)
			}
			if !nar.SameTree(l.Root, c.listing.Root) {
				t.Fatal("wrong listing")
			}
			sub, n := firstFile(c.listing)
			f, _, err := s.openVerified(context.Background(), p, sub)
			if err != nil {
				t.Fatalf("read with index keys hanging: %v", err)
			}
			got, _ := io.ReadAll(io.NewSectionReader(f.File, f.Base, f.Size))
			f.Close()
			if !bytes.Equal(got, contentsOf(c, n)) {
				t.Fatal("wrong contents")
			}
			if err := s.caches[0].up.IndexFailure(hash); err == nil {
				t.Error("the index failure is not remembered")
			}
		})
	}
}
