package fs

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/narfs/narfs/nar"
)

// TestLieMovesGeneration: a .ls that lies about a file's size (inside
// the padding the signed NarSize allows) is what a lookup shows; the
// open that verifies the NAR moves the path's generation in the core,
// reads every verified byte, and getattr answers the verified size from
// then on. Without OPEN the first read, sized by the lie, fails once
// with EIO. When the kernel forgets the path's root, the core forgets
// what it handed (the generation restarts).
func TestLieMovesGeneration(t *testing.T) {
	tree := fixturePath(t, "-tree-small")
	for _, noOpen := range []bool{false, true} {
		cache := t.TempDir()
		if out, err := exec.Command("cp", "-a", filepath.Join(fixtures, "cache-none")+"/.", cache).CombinedOutput(); err != nil {
			t.Fatalf("%v %s", err, out)
		}
		lsPath := filepath.Join(cache, tree[:32]+".ls")
		data, err := os.ReadFile(lsPath)
		if err != nil {
			t.Fatal(err)
		}
		l, err := nar.DecodeListing(data)
		if err != nil {
			t.Fatal(err)
		}
		a, err := l.Find("A")
		if err != nil {
			t.Fatal(err)
		}
		real := a.Size
		a.Size-- // the same NAR length: the padding absorbs it
		var b strings.Builder
		if err := l.Encode(&b); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(lsPath, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}

		root := newTestRootWith(t, cache, Options{NoOpen: noOpen})
		dirIn, _, errno := lookup(t, root, tree)
		if errno != 0 {
			t.Fatalf("lookup %s: %v", tree, errno)
		}
		in, out, errno := lookup(t, dirIn.Operations(), "A")
		if errno != 0 {
			t.Fatalf("lookup A: %v", errno)
		}
		if int64(out.Attr.Size) != real-1 {
			t.Fatalf("before the NAR: size %d, want the .ls's %d", out.Attr.Size, real-1)
		}
		node := in.Operations().(*fileNode)
		buf := make([]byte, 64)
		var res fuse.ReadResult
		if noOpen {
			if _, errno := node.Read(context.Background(), nil, buf, 0); errno != syscall.EIO {
				t.Fatalf("no-open: first read after the lie: %v, want EIO", errno)
			}
			res, errno = node.Read(context.Background(), nil, buf, 0)
			node.shared.close(node, true)
		} else {
			var fh fs.FileHandle
			fh, _, errno = node.Open(context.Background(), syscall.O_RDONLY)
			if errno != 0 {
				t.Fatalf("open: %v", errno)
			}
			res, errno = fh.(fs.FileReader).Read(context.Background(), buf, 0)
			fh.(fs.FileReleaser).Release(context.Background())
		}
		if errno != 0 {
			t.Fatalf("noOpen %v: read: %v", noOpen, errno)
		}
		if got, _ := res.Bytes(buf); int64(len(got)) != real {
			t.Errorf("noOpen %v: read %d bytes, want all %d verified ones", noOpen, len(got), real)
		}
		var attr fuse.AttrOut
		if errno := node.Getattr(context.Background(), nil, &attr); errno != 0 || int64(attr.Attr.Size) != real {
			t.Errorf("noOpen %v: after the NAR: size %d (%v), want %d", noOpen, attr.Attr.Size, errno, real)
		}
		r := node.ref
		if g := r.generation(); g != 1 || node.gen.Load() != 1 {
			t.Errorf("noOpen %v: generation %d, node's %d; want 1", noOpen, g, node.gen.Load())
		}
		dirIn.Operations().(*dirNode).OnForget()
		if g := r.generation(); g != 0 {
			t.Errorf("noOpen %v: generation %d after the root was forgotten, want 0", noOpen, g)
		}
	}
}
