package integration

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/remote/chunkindex"
	"github.com/narfs/narfs/remote/narinfo"
)

// TestMountIndexed: a cache written by narfs push, mounted: metadata
// comes from the signed index without any NAR request, every file reads
// back as in /nix/store, programs run from the mount, and reading one
// file fetches far less than its path's NAR.
func TestMountIndexed(t *testing.T) {
	c := nixClosure(t)
	for _, comp := range []string{"zstd", "none"} {
		t.Run(comp, func(t *testing.T) {
			dir := pushClosure(t, c, "--compression", comp)
			h := serveHTTP(t, dir)
			// The fixture's paths are small: by ranges only, as a large
			// path is read (TestMountIndexedSmallPathWhole: the default).
			m := mountNarfs(t, h.URL, nil, "--trusted-public-keys", c.publicKey, "--indexed-whole-max=0")
			// ls -lR of everything: no NAR object is fetched.
			for _, p := range c.all {
				if out, err := bashC(t, "ls -lR '"+filepath.Join(m.Dir, p)+"' >/dev/null"); err != nil {
					t.Fatalf("ls -lR %s: %v\n%s", p, err, out)
				}
			}
			if n := h.narGets(); n != 0 {
				t.Fatalf("metadata of the closure cost %d NAR requests, want 0", n)
			}
			// One small file of the largest path costs one ranged request
			// of about a chunk.
			big := largestPath(t, c)
			small := smallFileOf(t, filepath.Join("/nix/store", big))
			if got, want := readFile(t, filepath.Join(m.Dir, big, small)), readFile(t, filepath.Join("/nix/store", big, small)); string(got) != string(want) {
				t.Fatalf("%s/%s: wrong contents", big, small)
			}
			if n := h.narGets(); n != 1 {
				t.Errorf("one small file: %d NAR requests, want 1", n)
			}
			// The app runs from the mount.
			if out, err := bashC(t, "'"+filepath.Join(m.Dir, c.app, "bin/app")+"'"); err != nil {
				t.Errorf("running the app from the mount: %v\n%s", err, out)
			}
			// And everything equals the store, byte for byte.
			for _, p := range c.all {
				if out, err := bashC(t, "diff -r --no-dereference '/nix/store/"+p+"' '"+filepath.Join(m.Dir, p)+"'"); err != nil {
					t.Errorf("%s differs through the mount: %v\n%s", p, err, out)
				}
			}
			if strings.Contains(m.Log(), "ignoring the path's chunk index") {
				t.Errorf("an index narfs push wrote was not used:\n%s", m.Log())
			}
		})
	}
}

// TestMountIndexedSmallPathWhole: with the default --indexed-whole-max, a
// small indexed path is fetched whole in the background from the first
// read of one of its files, in a few requests of up to 2 MiB; then every
// file of it reads as in /nix/store with no further request.
func TestMountIndexedSmallPathWhole(t *testing.T) {
	c := nixClosure(t)
	dir := pushClosure(t, c, "--compression", "zstd")
	h := serveHTTP(t, dir)
	m := mountNarfs(t, h.URL, nil, "--trusted-public-keys", c.publicKey)
	big := largestPath(t, c)
	ni, _ := pushedIndex(t, dir, big)
	small := smallFileOf(t, filepath.Join("/nix/store", big))
	if got, want := readFile(t, filepath.Join(m.Dir, big, small)), readFile(t, filepath.Join("/nix/store", big, small)); string(got) != string(want) {
		t.Fatalf("%s/%s: wrong contents", big, small)
	}
	maxReqs := int(ni.FileSize/(2<<20)) + 2
	deadline := time.Now().Add(10 * time.Second)
	for h.narBytes() < ni.FileSize && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := h.narBytes(); got != ni.FileSize {
		t.Fatalf("after one read, %d of the object's %d bytes fetched", got, ni.FileSize)
	}
	n := h.narGets()
	if n > maxReqs {
		t.Errorf("the fill took %d requests for %d bytes, want at most %d", n, ni.FileSize, maxReqs)
	}
	if out, err := bashC(t, "diff -r --no-dereference '/nix/store/"+big+"' '"+filepath.Join(m.Dir, big)+"'"); err != nil {
		t.Errorf("%s differs through the mount: %v\n%s", big, err, out)
	}
	if got := h.narGets(); got != n {
		t.Errorf("reading the filled path made %d more requests", got-n)
	}
}

// TestMountIndexedTamperedChunk: a chunk whose bytes were changed in the
// cache (the signature no longer covers them) makes that file EIO, logged;
// files in other chunks of the same path read fine.
func TestMountIndexedTamperedChunk(t *testing.T) {
	c := nixClosure(t)
	dir := pushClosure(t, c, "--compression", "none")
	big := largestPath(t, c)
	ni, x := pushedIndex(t, dir, big)
	// The largest file: flip a byte in its middle, inside the object.
	victim, vn := largestFile(x.Listing)
	obj := filepath.Join(dir, ni.URL)
	data, err := os.ReadFile(obj)
	if err != nil {
		t.Fatal(err)
	}
	at := vn.NarOffset + vn.Size/2
	data[at] ^= 0xff
	if err := os.WriteFile(obj, data, 0o644); err != nil {
		t.Fatal(err)
	}
	h := serveHTTP(t, dir)
	m := mountNarfs(t, h.URL, nil, "--trusted-public-keys", c.publicKey)
	_, err = os.ReadFile(filepath.Join(m.Dir, big, victim))
	if errno, ok := underlyingErrno(err); !ok || errno != syscall.EIO {
		t.Fatalf("reading the tampered file: %v, want EIO", err)
	}
	if !strings.Contains(m.Log(), "chunk failed verification") {
		t.Errorf("the bad chunk is not in the log:\n%s", m.Log())
	}
	bf, bl := x.Span(at, 1)
	checked := 0
	walkFiles(x.Listing.Root, "", func(sub string, n *nar.Node) {
		f, l := x.Span(n.NarOffset, n.Size)
		if n.Size > 0 && f < bl && bf < l {
			return // shares the bad chunk
		}
		got, err := os.ReadFile(filepath.Join(m.Dir, big, sub))
		want, _ := os.ReadFile(filepath.Join("/nix/store", big, sub))
		if err != nil || string(got) != string(want) {
			t.Errorf("sibling %s: %v", sub, err)
		}
		checked++
	})
	if checked == 0 {
		t.Fatal("no sibling file was checked")
	}
}

func walkFiles(n *nar.Node, sub string, fn func(string, *nar.Node)) {
	switch n.Type {
	case nar.TypeRegular:
		fn(sub, n)
	case nar.TypeDirectory:
		names := make([]string, 0, len(n.Entries))
		for name := range n.Entries {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			walkFiles(n.Entries[name], filepath.Join(sub, name), fn)
		}
	}
}

func largestFile(l *nar.Listing) (string, *nar.Node) {
	var best string
	var bn *nar.Node
	walkFiles(l.Root, "", func(sub string, n *nar.Node) {
		if bn == nil || n.Size > bn.Size {
			best, bn = sub, n
		}
	})
	return best, bn
}

// largestPath is the closure path with the most bytes of files.
func largestPath(t *testing.T, c *closure) string {
	t.Helper()
	var best string
	var bestSize int64
	for _, p := range c.all {
		var size int64
		filepath.WalkDir(filepath.Join("/nix/store", p), func(_ string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				if fi, err := d.Info(); err == nil {
					size += fi.Size()
				}
			}
			return nil
		})
		if size > bestSize {
			best, bestSize = p, size
		}
	}
	return best
}

// smallFileOf is a small regular file under root, relative to it.
func smallFileOf(t *testing.T, root string) string {
	t.Helper()
	var found string
	errFound := errors.New("found")
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil && fi.Size() > 0 && fi.Size() < 4096 {
				found, _ = filepath.Rel(root, p)
				return errFound
			}
		}
		return nil
	})
	if found == "" {
		t.Fatalf("no small file under %s", root)
	}
	return found
}

// TestMountIndexInvalid: an index the signature does not cover (changed
// after signing) or signed by a key nobody trusts is ignored as a whole:
// the mount reads the path as from a stock cache, every byte verified by
// NarHash, and says why in the log.
func TestMountIndexInvalid(t *testing.T) {
	c := nixClosure(t)
	for name, spoil := range map[string]func(t *testing.T, dir, idxPath string){
		"changed": func(t *testing.T, dir, idxPath string) {
			data, err := os.ReadFile(idxPath)
			if err != nil {
				t.Fatal(err)
			}
			data[len(data)/2] ^= 1
			os.WriteFile(idxPath, data, 0o644)
		},
		"other key": func(t *testing.T, dir, idxPath string) {},
	} {
		t.Run(name, func(t *testing.T) {
			dir := pushClosure(t, c)
			big := largestPath(t, c)
			ni := readNarinfo(t, filepath.Join(dir, hashOf(big)+".narinfo"))
			alias := filepath.Join(dir, chunkindex.AliasKey(hashOf(big)))
			spoil(t, dir, alias)
			key := c.publicKey
			if name == "other key" {
				// The path stays trusted through the narinfo's Sig; the
				// index's signature names a key nobody trusts.
				o, err := chunkindex.Split(readFile(t, alias))
				if err != nil {
					t.Fatal(err)
				}
				for i, s := range o.Sigs {
					_, b64, _ := strings.Cut(s, ":")
					o.Sigs[i] = "someone-else-1:" + b64
				}
				obj, err := chunkindex.Seal(o.Payload, o.Sigs)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(alias, obj, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			h := serveHTTP(t, dir)
			m := mountNarfs(t, h.URL, nil, "--trusted-public-keys", key)
			if out, err := bashC(t, "diff -r --no-dereference '/nix/store/"+big+"' '"+filepath.Join(m.Dir, big)+"'"); err != nil {
				t.Fatalf("%s differs through the mount: %v\n%s", big, err, out)
			}
			if !strings.Contains(m.Log(), "ignoring the path's chunk index") {
				t.Errorf("the ignored index is not in the log:\n%s", m.Log())
			}
			// Read whole: the one NAR request is a plain GET of the object.
			if n := h.gets(ni.URL); n != 1 {
				t.Errorf("%d GETs of the NAR object, want 1", n)
			}
		})
	}
}

// TestMountIndexedOpenModes: a large file of an indexed path is read
// through narfs until complete, then by passthrough from a file of its
// own. The kernel refuses (EIO) an inode open both ways at once, so an
// open while an earlier one is still open must keep the earlier mode.
func TestMountIndexedOpenModes(t *testing.T) {
	c := nixClosure(t)
	dir := pushClosure(t, c)
	h := serveHTTP(t, dir)
	m := mountNarfs(t, h.URL, nil, "--trusted-public-keys", c.publicKey)
	big := largestPath(t, c)
	_, x := pushedIndex(t, dir, big)
	name, n := largestFile(x.Listing)
	if n.Size < 1<<20 {
		t.Skipf("largest file %s is %d bytes, under the size of a file of its own", name, n.Size)
	}
	p := filepath.Join(m.Dir, big, name)
	// fd 3 stays open (read through narfs) while the file is read whole,
	// gets a file of its own, and is opened and read again.
	script := "exec 3<'" + p + "' && cat '" + p + "' >/dev/null && sleep 1 && cmp '" + p + "' '" + filepath.Join("/nix/store", big, name) + "' && cat <&3 >/dev/null"
	if out, err := bashC(t, script); err != nil {
		t.Fatalf("reading a large file again while an earlier open is still open: %v\n%s", err, out)
	}
	// And once nothing is open, a new open reads it from its own file.
	if out, err := bashC(t, "cmp '"+p+"' '"+filepath.Join("/nix/store", big, name)+"'"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
}

// pushedIndex reads a pushed path's narinfo and decodes its chunk index.
func pushedIndex(t *testing.T, dir, base string) (*narinfo.NarInfo, *chunkindex.Index) {
	t.Helper()
	ni := readNarinfo(t, filepath.Join(dir, hashOf(base)+".narinfo"))
	data, err := os.ReadFile(filepath.Join(dir, chunkindex.AliasKey(hashOf(base))))
	if err != nil {
		t.Fatal(err)
	}
	x, err := chunkindex.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	return ni, x
}
