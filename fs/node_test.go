package fs

import (
	"bytes"
	"context"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/narfs/narfs/remote"
	"github.com/narfs/narfs/remote/narinfo"
)

const fixtures = "../nar/testdata/nix"

// newTestRoot builds the node tree over a fixture cache without a kernel.
func newTestRoot(t *testing.T, cache string) *rootNode {
	t.Helper()
	return newTestRootWith(t, cache, Options{})
}

// newTestRootWith is newTestRoot with mount options.
func newTestRootWith(t *testing.T, cache string, o Options) *rootNode {
	t.Helper()
	pk, err := os.ReadFile(filepath.Join(fixtures, "public-key.txt"))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := narinfo.ParsePublicKeys(string(pk))
	if err != nil {
		t.Fatal(err)
	}
	abs, err := filepath.Abs(cache)
	if err != nil {
		t.Fatal(err)
	}
	store, err := remote.Open(context.Background(), []string{"file://" + abs}, remote.Config{
		TrustedKeys: keys, RequireSigs: true, CacheDir: t.TempDir(), Logger: discardLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	root := newMountState(store, discardLogger(), o).root
	fs.NewNodeFS(root, &fs.Options{})
	return root
}

// fixturePath finds a fixture store path by name suffix.
func fixturePath(t *testing.T, suffix string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(fixtures, "paths.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) == 2 && strings.HasSuffix(f[0], suffix) {
			return f[0]
		}
	}
	t.Fatalf("no fixture path ending in %s", suffix)
	return ""
}

func lookup(t *testing.T, parent fs.InodeEmbedder, name string) (*fs.Inode, *fuse.EntryOut, syscall.Errno) {
	t.Helper()
	var out fuse.EntryOut
	l, ok := parent.(fs.NodeLookuper)
	if !ok {
		t.Fatalf("%T is not a directory", parent)
	}
	in, errno := l.Lookup(context.Background(), name, &out)
	return in, &out, errno
}

func TestNodesShowTheStore(t *testing.T) {
	root := newTestRoot(t, filepath.Join(fixtures, "cache-zstd"))
	tree := fixturePath(t, "-tree-small")

	for _, bad := range []string{"x", "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-x", tree[:32] + "-other-name", "00000000000000000000000000000000-missing"} {
		if _, _, errno := lookup(t, root, bad); errno != syscall.ENOENT {
			t.Errorf("lookup %q: %v, want ENOENT", bad, errno)
		}
	}
	in, out, errno := lookup(t, root, tree)
	if errno != 0 {
		t.Fatalf("lookup %s: %v", tree, errno)
	}
	if out.Attr.Mode != syscall.S_IFDIR|0o555 || out.Attr.Mtime != 1 {
		t.Errorf("store path attr: mode %o mtime %d", out.Attr.Mode, out.Attr.Mtime)
	}
	in2, _, _ := lookup(t, root, tree)
	if in.StableAttr().Ino != in2.StableAttr().Ino {
		t.Error("inode number not stable across lookups")
	}
	dir := in.Operations()

	// Every regular file reads back exactly what the reference extraction
	// holds, at random offsets and sizes.
	ref := t.TempDir()
	extract(t, filepath.Join(fixtures, "dumps", tree+".nar"), filepath.Join(ref, "x"))
	rng := rand.New(rand.NewSource(1))
	err := filepath.WalkDir(filepath.Join(ref, "x"), func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(filepath.Join(ref, "x"), p)
		node := dir
		for _, part := range strings.Split(rel, "/") {
			c, _, errno := lookup(t, node, part)
			if errno != 0 {
				t.Fatalf("lookup %s: %v", rel, errno)
			}
			node = c.Operations()
		}
		want, _ := os.ReadFile(p)
		fi, _ := os.Stat(p)
		var attr fuse.AttrOut
		node.(fs.NodeGetattrer).Getattr(context.Background(), nil, &attr)
		// nix-store --restore does not canonicalise modes; the store does.
		wantMode := uint32(syscall.S_IFREG | 0o444)
		if fi.Mode()&0o100 != 0 {
			wantMode = syscall.S_IFREG | 0o555
		}
		if attr.Size != uint64(len(want)) || attr.Mode != wantMode || attr.Mtime != 1 {
			t.Errorf("%s: size %d mode %o mtime %d, want %d %o 1", rel, attr.Size, attr.Mode, attr.Mtime, len(want), wantMode)
		}
		fh, flags, errno := node.(fs.NodeOpener).Open(context.Background(), syscall.O_RDONLY)
		if errno != 0 {
			t.Fatalf("open %s: %v", rel, errno)
		}
		if flags&fuse.FOPEN_KEEP_CACHE == 0 {
			t.Errorf("open %s: no FOPEN_KEEP_CACHE", rel)
		}
		if _, _, errno := node.(fs.NodeOpener).Open(context.Background(), syscall.O_WRONLY); errno != syscall.EROFS {
			t.Errorf("open %s for writing: %v, want EROFS", rel, errno)
		}
		for range 5 {
			off := 0
			if len(want) > 0 {
				off = rng.Intn(len(want))
			}
			buf := make([]byte, 1+rng.Intn(8192))
			res, errno := fh.(fs.FileReader).Read(context.Background(), buf, int64(off))
			if errno != 0 {
				t.Fatalf("read %s: %v", rel, errno)
			}
			got, _ := res.Bytes(buf)
			end := min(off+len(buf), len(want))
			if !bytes.Equal(got, want[off:end]) {
				t.Errorf("%s: read at %d differs", rel, off)
			}
		}
		fh.(fs.FileReleaser).Release(context.Background())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestCorruptNARIsEIO(t *testing.T) {
	cache := t.TempDir()
	if out, err := exec.Command("cp", "-a", filepath.Join(fixtures, "cache-none")+"/.", cache).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	file := fixturePath(t, "-single-file")
	info, _ := os.ReadFile(filepath.Join(cache, file[:32]+".narinfo"))
	var url string
	for _, l := range strings.Split(string(info), "\n") {
		if v, ok := strings.CutPrefix(l, "URL: "); ok {
			url = v
		}
	}
	nar, _ := os.ReadFile(filepath.Join(cache, url))
	nar[100] ^= 1 // inside the contents, which start at 96
	os.WriteFile(filepath.Join(cache, url), nar, 0o644)

	root := newTestRoot(t, cache)
	in, _, errno := lookup(t, root, file)
	if errno != 0 {
		t.Fatalf("lookup: %v (metadata comes from the .ls)", errno)
	}
	if _, _, errno := in.Operations().(fs.NodeOpener).Open(context.Background(), syscall.O_RDONLY); errno != syscall.EIO {
		t.Errorf("open of a corrupt NAR's file: %v, want EIO", errno)
	}
}

func extract(t *testing.T, narFile, dst string) {
	t.Helper()
	f, err := os.Open(narFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command("nix-store", "--restore", dst)
	cmd.Stdin = f
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("nix-store --restore unavailable: %v %s", err, out)
	}
}
