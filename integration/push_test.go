package integration

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/remote/chunkindex"
	"github.com/narfs/narfs/remote/narinfo"
)

// pushClosure pushes the fixture closure with narfs push to a new
// file:// cache and returns its directory.
func pushClosure(t *testing.T, c *closure, extra ...string) string {
	t.Helper()
	dir := t.TempDir()
	args := append([]string{"push", "--secret-key", c.secretKey}, extra...)
	args = append(args, "file://"+dir, "/nix/store/"+c.root)
	out, errOut, code := narfs(t, nil, args...)
	if code != 0 {
		t.Fatalf("narfs push: exit %d\n%s%s", code, out, errOut)
	}
	if n := strings.Count(out, "pushed "); n != len(c.all) {
		t.Fatalf("narfs push pushed %d paths, want %d:\n%s", n, len(c.all), out)
	}
	return dir
}

// sameAsStore compares what Nix extracted with the paths in /nix/store.
func sameAsStore(t *testing.T, extracted string, paths []string) {
	t.Helper()
	for _, p := range paths {
		if out, err := bashC(t, "diff -r --no-dereference '/nix/store/"+p+"' '"+filepath.Join(extracted, p)+"'"); err != nil {
			t.Errorf("%s differs after a round trip through the pushed cache: %v\n%s", p, err, out)
		}
	}
}

// TestPushNixReads: a closure narfs pushed is a binary cache real Nix
// copies back byte for byte, over file:// and http.
func TestPushNixReads(t *testing.T) {
	c := nixClosure(t)
	for _, comp := range []string{"zstd", "none"} {
		t.Run(comp, func(t *testing.T) {
			dir := pushClosure(t, c, "--compression", comp, "--jobs", "3")
			sameAsStore(t, nixExtract(t, "file://"+dir, c.publicKey, c.all), c.all)
			h := serveHTTP(t, dir)
			sameAsStore(t, nixExtract(t, h.URL, c.publicKey, []string{c.root}), c.all)

			// narfs itself reads the pushed cache through the index.
			lib := c.iaPaths[2]
			out, errOut, code := narfs(t, nil, "cat", "--trusted-public-keys="+c.publicKey, "--cache-dir="+t.TempDir(), h.URL, lib+"/share/doc/README")
			if code != 0 || out != "narfs integration\n" {
				t.Errorf("narfs cat from the pushed cache: exit %d, %q, %s", code, out, errOut)
			}
			// The index is its alias object, fetched along with the
			// narinfo; the narinfo has only lines Nix writes.
			if alias := chunkindex.AliasKey(hashOf(lib)); h.gets(alias) == 0 {
				t.Errorf("narfs cat did not fetch the index %s", alias)
			}
			for _, p := range c.all {
				if data := readFile(t, filepath.Join(dir, hashOf(p)+".narinfo")); strings.Contains(string(data), "Narfs") {
					t.Errorf("%s.narinfo carries narfs lines:\n%s", hashOf(p), data)
				}
			}

			out, errOut, code = narfs(t, nil, "push", "--secret-key", c.secretKey, "file://"+dir, "/nix/store/"+c.root)
			if code != 0 || strings.Count(out, "skipped ") != len(c.all) {
				t.Errorf("second push: exit %d, want every path skipped:\n%s%s", code, out, errOut)
			}
		})
	}
}

// TestVerifyTamper: one byte changed inside a chunk, with the chunk's
// zstd frame re-encoded so that the object still decompresses, makes
// narfs verify fail that path (and only it) with exit status 1.
func TestVerifyTamper(t *testing.T) {
	c := nixClosure(t)
	dir := pushClosure(t, c)
	key := "--trusted-public-keys=" + c.publicKey
	out, errOut, code := narfs(t, nil, "verify", key, "file://"+dir, "--all")
	if code != 0 || strings.Count(out, "ok /nix/store/") != len(c.all) {
		t.Fatalf("verify of an untouched cache: exit %d\n%s%s", code, out, errOut)
	}

	// The path of most chunks; the last chunk is changed.
	var (
		victim string
		ni     *narinfo.NarInfo
		x      *chunkindex.Index
	)
	for _, p := range c.all {
		pni := readNarinfo(t, filepath.Join(dir, hashOf(p)+".narinfo"))
		px, err := chunkindex.Decode(readFile(t, filepath.Join(dir, chunkindex.AliasKey(hashOf(p)))))
		if err != nil {
			t.Fatal(err)
		}
		if x == nil || len(px.Chunks) > len(x.Chunks) {
			victim, ni, x = p, pni, px
		}
	}
	if len(x.Chunks) < 2 {
		t.Fatalf("%s has %d chunks", victim, len(x.Chunks))
	}
	objPath := filepath.Join(dir, ni.URL)
	obj := readFile(t, objPath)
	ch := x.Chunks[len(x.Chunks)-1]
	frame := obj[ch.FileOffset : ch.FileOffset+ch.FileLen]
	dec, _ := zstd.NewReader(nil)
	plain, err := dec.DecodeAll(frame, nil)
	if err != nil {
		t.Fatal(err)
	}
	// A byte of file contents, so that the NAR still parses.
	at := int64(-1)
	var walk func(n *nar.Node)
	walk = func(n *nar.Node) {
		switch n.Type {
		case nar.TypeRegular:
			if start, end := max(n.NarOffset, ch.NarOffset), min(n.NarOffset+n.Size, ch.NarEnd()); start < end && at < 0 {
				at = start - ch.NarOffset
			}
		case nar.TypeDirectory:
			for _, e := range n.Entries {
				walk(e)
			}
		}
	}
	walk(x.Listing.Root)
	if at < 0 {
		t.Fatalf("no file contents in the last chunk of %s", victim)
	}
	plain[at] ^= 0x20
	enc, _ := zstd.NewWriter(nil)
	tampered := append(append(bytes.Clone(obj[:ch.FileOffset]), enc.EncodeAll(plain, nil)...), obj[ch.FileOffset+ch.FileLen:]...)
	if err := os.WriteFile(objPath, tampered, 0o644); err != nil {
		t.Fatal(err)
	}

	out, errOut, code = narfs(t, nil, "verify", key, "file://"+dir, "--all")
	if code != 1 {
		t.Errorf("verify of a tampered cache: exit %d, want 1\n%s%s", code, out, errOut)
	}
	if !strings.Contains(out, "FAIL /nix/store/"+victim+": ") || strings.Count(out, "FAIL ") != 1 ||
		strings.Count(out, "ok /nix/store/") != len(c.all)-1 {
		t.Errorf("verify output, want one FAIL for %s:\n%s", victim, out)
	}
	for _, want := range []string{"NarHash", "chunk"} {
		if !strings.Contains(out, want) {
			t.Errorf("verify output does not mention %q:\n%s", want, out)
		}
	}
	_, _, code = narfs(t, nil, "verify", key, "file://"+dir)
	if code != 2 {
		t.Errorf("verify without paths: exit %d, want 2", code)
	}
}

func readNarinfo(t *testing.T, p string) *narinfo.NarInfo {
	t.Helper()
	ni, err := narinfo.Parse(readFile(t, p))
	if err != nil {
		t.Fatal(err)
	}
	return ni
}

// gets counts the requests for one key.
func (h *httpCache) gets(key string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.get[key]
}
