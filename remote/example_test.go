package remote_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/narfs/narfs/remote"
)

// openExample opens the binary cache in dir (a file:// cache of
// content-addressed paths: they are trusted because their store paths
// recompute from their contents, so no key is needed) with its local
// cache in a temporary directory. done closes the core and removes it.
func openExample(ctx context.Context, dir string) (core *remote.Core, done func()) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		log.Fatal(err)
	}
	cacheDir, err := os.MkdirTemp("", "narfs-example-")
	if err != nil {
		log.Fatal(err)
	}
	core, err = remote.Open(ctx, []string{"file://" + abs}, remote.Config{
		RequireSigs: true, // and no TrustedKeys: only content-addressed paths resolve
		CacheDir:    cacheDir,
		Logger:      slog.New(slog.DiscardHandler),
	})
	if err != nil {
		log.Fatal(err)
	}
	return core, func() {
		core.Close()
		os.RemoveAll(cacheDir)
	}
}

// Open the caches, resolve a store path, open one of its files and read
// it. The bytes are the verified NAR's: the core fetches the NAR, checks
// it against the trusted narinfo (here: the content address) and only
// then serves it.
func ExampleOpen() {
	ctx := context.Background()
	cache, err := filepath.Abs("testdata/cache-ca")
	if err != nil {
		log.Fatal(err)
	}
	cacheDir, err := os.MkdirTemp("", "narfs-example-") // verified NARs go here
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(cacheDir)
	core, err := remote.Open(ctx, []string{"file://" + cache}, remote.Config{
		RequireSigs: true, // no TrustedKeys: only content-addressed paths resolve
		CacheDir:    cacheDir,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer core.Close()

	p, err := core.Resolve(ctx, "zir4wp3gn2wl80pk2mr33bws617f5f7z-text")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(p.Path.Abs(core.StoreDir()))
	fmt.Println("trusted:", strings.HasPrefix(p.Trust, "content-addressed"))

	f, err := core.Open(ctx, p, "") // "": the path is a single file
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	data, err := io.ReadAll(f.Reader(ctx))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%q\n", data)
	// Output:
	// /nix/store/zir4wp3gn2wl80pk2mr33bws617f5f7z-text
	// trusted: true
	// "text file contents\n"
}

// Open a file inside a directory path by its path below the store path,
// and read part of it at an offset. Node is the file's node in the
// verified listing.
func ExampleCore_Open() {
	ctx := context.Background()
	core, done := openExample(ctx, "testdata/cache-ca")
	defer done()

	p, err := core.Resolve(ctx, "b8gpy5m17cqs22bsf106zr0575ciikpb-rec-sha512")
	if err != nil {
		log.Fatal(err)
	}
	f, err := core.Open(ctx, p, "bin/hi")
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	fmt.Println("size", f.Node().Size, "executable", f.Node().Executable)

	buf := make([]byte, 7)
	n, err := f.ReadAt(ctx, buf, 10)
	if err != nil && err != io.EOF {
		log.Fatal(err)
	}
	fmt.Printf("%q\n", buf[:n])
	// A small file has no own copy for the kernel to read directly.
	fmt.Println("passthrough", f.Passthrough() != nil)

	// Only regular files open.
	if _, err := core.Open(ctx, p, "link"); err != nil {
		fmt.Println("link: not a regular file")
	}
	// Output:
	// size 18 executable true
	// "echo hi"
	// passthrough false
	// link: not a regular file
}

// A front end that answers from metadata the core has not verified yet
// (Lookup may answer from the cache's unsigned .ls listing) subscribes
// to generation changes: when the verified NAR contradicts what was
// handed out, the path's generation moves and the front end drops what
// it showed (package fs invalidates the kernel's caches). Here the .ls
// lies about a symlink's target.
func ExampleCore_Subscribe() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "narfs-example-cache-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	copyCache(dir, "testdata/cache-ca")
	const hash = "b8gpy5m17cqs22bsf106zr0575ciikpb"
	ls := filepath.Join(dir, hash+".ls")
	lie := strings.Replace(string(must(os.ReadFile(ls))), `"target":"bin/hi"`, `"target":"bin/ho"`, 1)
	if err := os.WriteFile(ls, []byte(lie), 0o644); err != nil {
		log.Fatal(err)
	}

	core, done := openExample(ctx, dir)
	defer done()
	cancel := core.Subscribe(func(h string, gen uint64) {
		// Called on the verifying goroutine, before the Open that
		// verified the path returns; it must not block.
		fmt.Println("generation of", h, "moved to", gen)
	})
	defer cancel()

	p, err := core.Resolve(ctx, hash+"-rec-sha512")
	if err != nil {
		log.Fatal(err)
	}
	gen := core.Gen(p) // read before answering from p's metadata
	n, err := core.Lookup(ctx, p, "link")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("unverified: link ->", n.Target)

	f, err := core.Open(ctx, p, "bin/hi") // fetches and verifies the NAR
	if err != nil {
		log.Fatal(err)
	}
	f.Close()
	fmt.Println("answer stale:", core.Gen(p) != gen)
	n, err = core.Lookup(ctx, p, "link") // now from the verified listing
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("verified: link ->", n.Target)
	core.Forget(p) // when the front end no longer shows p
	// Output:
	// unverified: link -> bin/ho
	// generation of b8gpy5m17cqs22bsf106zr0575ciikpb moved to 1
	// answer stale: true
	// verified: link -> bin/hi
}

// copyCache copies the flat binary cache in src (narinfos, listings,
// nar/) into dst.
func copyCache(dst, src string) {
	err := filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel := must(filepath.Rel(src, path))
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		return os.WriteFile(filepath.Join(dst, rel), must(os.ReadFile(path)), 0o644)
	})
	if err != nil {
		log.Fatal(err)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		log.Fatal(err)
	}
	return v
}
