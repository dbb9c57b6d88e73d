package upload

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/zstd"

	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/remote/backend"
	"github.com/narfs/narfs/remote/narinfo"
	"github.com/narfs/narfs/remote/storepath"
)

// PushOptions tune Push.
type PushOptions struct {
	Key narinfo.SecretKey
	// Trusted: a narinfo already in the cache is kept (the path skipped)
	// only if one of these keys, or Key, signs it; any other is replaced.
	Trusted     []narinfo.PublicKey
	Compression string // "zstd" (the default) or "none"
	Level       zstd.EncoderLevel
	TempDir     string // for objects before upload; "" is os.TempDir
	Jobs        int    // paths in flight (PushAll), default 4
	// Progress, if not nil, is told of NAR bytes processed, from any
	// goroutine.
	Progress func(n int64)
}

func (o *PushOptions) defaults() error {
	switch o.Compression {
	case "":
		o.Compression = "zstd"
	case "zstd", "none":
	default:
		return fmt.Errorf("compression %q: want zstd or none", o.Compression)
	}
	if o.Level == 0 {
		o.Level = zstd.SpeedDefault
	}
	if o.Jobs <= 0 {
		o.Jobs = 4
	}
	if o.Progress == nil {
		o.Progress = func(int64) {}
	}
	return nil
}

// Result is the outcome of one path.
type Result struct {
	Path    string // absolute store path
	Skipped bool   // already in the cache (push) or already indexed (index)
	Err     error
	// Replaced says why a narinfo that was already in the cache was
	// overwritten ("" if there was none, or the path was skipped).
	Replaced string
}

// staged is a path whose objects are uploaded and whose narinfo is not.
type staged struct {
	ni       *narinfo.NarInfo
	replaced string // why the narinfo in the cache is overwritten
}

// PushAll uploads the paths, Jobs at a time, calling report once per path
// as it finishes. A path's narinfo is written after those of its
// references among paths, and not at all if one of them failed.
func (c *Cache) PushAll(ctx context.Context, paths []PathInfo, opts PushOptions, report func(Result)) error {
	if err := opts.defaults(); err != nil {
		return err
	}
	paths = dedup(paths)
	storeDir := storepath.DefaultStoreDir
	if len(paths) > 0 {
		storeDir = paths[0].StoreDir // one local store: one StoreDir
	}
	if err := c.CheckStoreDir(ctx, storeDir); err != nil {
		return err
	}
	if err := c.EnsureCacheInfo(ctx); err != nil {
		return err
	}
	order := topoOrder(paths)
	done := map[storepath.StorePath]*pathDone{}
	for _, i := range order {
		done[paths[i].Path] = &pathDone{ch: make(chan struct{})}
	}
	work := make(chan int)
	var wg sync.WaitGroup
	for range opts.Jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				p := &paths[i]
				r := c.pushOne(ctx, p, opts, done)
				d := done[p.Path]
				d.failed = r.Err != nil
				close(d.ch)
				report(r)
			}
		}()
	}
	// Dispatching in dependency order means a worker waiting for a
	// reference waits for a path already taken by another worker (or
	// done), so the pool cannot deadlock.
	for _, i := range order {
		work <- i
	}
	close(work)
	wg.Wait()
	return nil
}

type pathDone struct {
	ch     chan struct{}
	failed bool // set before ch is closed
}

// pushOne stages a path, waits for its references and writes its narinfo.
func (c *Cache) pushOne(ctx context.Context, p *PathInfo, opts PushOptions, done map[storepath.StorePath]*pathDone) Result {
	r := Result{Path: p.Abs()}
	s, err := c.stage(ctx, p, opts)
	if err != nil || s == nil {
		r.Skipped, r.Err = s == nil && err == nil, err
		return r
	}
	r.Replaced = s.replaced
	for _, ref := range p.References {
		d, ok := done[ref]
		if !ok || ref == p.Path {
			continue
		}
		select {
		case <-d.ch:
		case <-ctx.Done():
			r.Err = ctx.Err()
			return r
		}
		if d.failed {
			r.Err = fmt.Errorf("not writing the narinfo: reference %s failed", ref)
			return r
		}
	}
	r.Err = c.commit(ctx, s)
	return r
}

// Push uploads one path; skipped is true if the cache already has a
// trusted narinfo for it (see stage). References are not checked.
func (c *Cache) Push(ctx context.Context, p *PathInfo, opts PushOptions) (skipped bool, err error) {
	if err := opts.defaults(); err != nil {
		return false, err
	}
	s, err := c.stage(ctx, p, opts)
	if err != nil || s == nil {
		return s == nil && err == nil, err
	}
	return false, c.commit(ctx, s)
}

// stage uploads everything of a path but its narinfo; nil, nil means a
// narinfo that can stay is already there (inCache).
func (c *Cache) stage(ctx context.Context, p *PathInfo, opts PushOptions) (*staged, error) {
	keep, replaced, err := c.inCache(ctx, p, opts)
	if err != nil || keep {
		return nil, err
	}
	// First read: hash and listing, which planning the chunks needs.
	d := newNarDigest()
	first := dumpReader(p.Abs())
	l, err := scan(first, d, nil)
	first.Close()
	if err != nil {
		return nil, err
	}
	if err := d.check(p.NarHash, p.NarSize); err != nil {
		return nil, fmt.Errorf("the local store's NAR differs from its database: %w", err)
	}
	// Second read: through the builder into a temporary object.
	obj, err := newTemp(opts.TempDir, "narfs-push-*.nar")
	if err != nil {
		return nil, err
	}
	defer obj.Close()
	second := dumpReader(p.Abs())
	ch, err := cut(&progressReader{r: second, fn: opts.Progress}, obj, l, p.NarHash, p.NarSize, opts.Compression, opts.Level)
	second.Close()
	if err != nil {
		return nil, err
	}
	fh := ch.fileHash
	ni := &narinfo.NarInfo{
		StorePath:   p.Path,
		StoreDir:    p.StoreDir,
		URL:         objectKey(fh, opts.Compression),
		Compression: opts.Compression,
		FileHash:    &fh,
		FileSize:    ch.size,
		NarHash:     p.NarHash,
		NarSize:     p.NarSize,
		References:  p.References,
		Deriver:     p.Deriver,
		Sigs:        append([]string(nil), p.Sigs...),
		CA:          p.CA,
	}
	sig, err := opts.Key.Sign(ni)
	if err != nil {
		return nil, err
	}
	if !contains(ni.Sigs, sig) {
		ni.Sigs = append(ni.Sigs, sig)
	}
	if err := c.putObject(ctx, ni.URL, obj.File, ch.size, typeNAR); err != nil {
		return nil, err
	}
	if err := c.putIndex(ctx, ni, ch, l, opts.Key); err != nil {
		return nil, err
	}
	return &staged{ni: ni, replaced: replaced}, nil
}

// inCache decides whether the narinfo at the path's key, if any, may stay:
// only if it parses, describes this path with the local store's NarHash
// and NarSize, is signed by opts.Key or a key of opts.Trusted, and its
// object is there (of FileSize, when it says). Anything else — junk
// squatting the key, another path's narinfo, an unsigned or foreign one —
// would leave the path unreadable, or readable only as someone else
// says, so it is replaced; replaced says why.
func (c *Cache) inCache(ctx context.Context, p *PathInfo, opts PushOptions) (keep bool, replaced string, err error) {
	key := p.Path.Hash + ".narinfo"
	data, err := backend.ReadAll(ctx, c.B, key, narinfo.MaxSize)
	switch {
	case errors.Is(err, backend.ErrNotFound):
		return false, "", nil
	case errors.Is(err, backend.ErrTooLarge):
		return false, fmt.Sprintf("%s is larger than %d bytes", key, narinfo.MaxSize), nil
	case err != nil:
		return false, "", err
	}
	ni, err := narinfo.Parse(data)
	if err != nil {
		return false, fmt.Sprintf("%s does not parse: %v", key, err), nil
	}
	if ni.StorePath != p.Path || storeDirOf(ni) != p.StoreDir {
		return false, fmt.Sprintf("%s describes %s", key, ni.StorePath.Abs(storeDirOf(ni))), nil
	}
	if !ni.NarHash.Equal(p.NarHash) || ni.NarSize != p.NarSize {
		return false, fmt.Sprintf("%s says NarHash %s, NarSize %d; the local path has %s, %d", key, ni.NarHash, ni.NarSize, p.NarHash, p.NarSize), nil
	}
	keys := opts.Trusted
	if len(opts.Key.Key) == ed25519.PrivateKeySize {
		keys = append([]narinfo.PublicKey{opts.Key.Public()}, keys...)
	}
	if _, err := ni.Verify(keys); err != nil {
		return false, fmt.Sprintf("%s is not signed by %s or a trusted key", key, opts.Key.Name), nil
	}
	ok, info, err := c.exists(ctx, ni.URL)
	if errors.Is(err, backend.ErrInvalidKey) {
		ok, err = false, nil
	}
	if err != nil {
		return false, "", err
	}
	if !ok || (ni.FileSize > 0 && info.Size != ni.FileSize) {
		return false, fmt.Sprintf("the object it names, %q, is missing or not FileSize bytes", ni.URL), nil
	}
	return true, "", nil
}

// putIndex writes the index (under its alias, the only name readers
// find it by) and the .ls of a narinfo whose object is in place, and
// removes the narinfo's layout-1 index lines.
func (c *Cache) putIndex(ctx context.Context, ni *narinfo.NarInfo, ch *chunked, l *nar.Listing, key narinfo.SecretKey) error {
	idx, k, err := ch.index(ni, l, key)
	if err != nil {
		return err
	}
	if err := c.putBytes(ctx, k, idx, typeIndex); err != nil {
		return err
	}
	ls, err := encodeListing(l)
	if err != nil {
		return err
	}
	return c.putBytes(ctx, ni.StorePath.Hash+".ls", ls, typeListing)
}

// commit writes the narinfo, the last object of a path.
func (c *Cache) commit(ctx context.Context, s *staged) error {
	return c.putBytes(ctx, s.ni.StorePath.Hash+".narinfo", s.ni.Marshal(), typeNarinfo)
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// dumpReader streams the NAR of a local path. Close stops the dump.
func dumpReader(path string) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(nar.Dump(pw, path))
	}()
	return pr
}

// progressReader reports the bytes read through it.
type progressReader struct {
	r  io.Reader
	fn func(int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.fn(int64(n))
	return n, err
}

func dedup(paths []PathInfo) []PathInfo {
	seen := map[storepath.StorePath]bool{}
	var out []PathInfo
	for _, p := range paths {
		if !seen[p.Path] {
			seen[p.Path] = true
			out = append(out, p)
		}
	}
	return out
}

// topoOrder returns the indices of paths, references first.
func topoOrder(paths []PathInfo) []int {
	idx := map[storepath.StorePath]int{}
	for i, p := range paths {
		idx[p.Path] = i
	}
	state := make([]byte, len(paths)) // 0 new, 1 visiting, 2 done
	var order []int
	var visit func(i int)
	visit = func(i int) {
		if state[i] != 0 {
			return // done, or a cycle (impossible in a store) cut here
		}
		state[i] = 1
		for _, r := range paths[i].References {
			if j, ok := idx[r]; ok {
				visit(j)
			}
		}
		state[i] = 2
		order = append(order, i)
	}
	for i := range paths {
		visit(i)
	}
	return order
}
