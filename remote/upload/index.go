package upload

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/klauspost/compress/zstd"

	"github.com/narfs/narfs/nar/compress"
	"github.com/narfs/narfs/remote/backend"
	"github.com/narfs/narfs/remote/chunkindex"
	"github.com/narfs/narfs/remote/narinfo"
	"github.com/narfs/narfs/remote/storepath"
)

// IndexOptions tune IndexAll.
type IndexOptions struct {
	Key narinfo.SecretKey
	// Trusted: a path is indexed only if its narinfo is signed by one of
	// these keys or by Key: the index signs the NAR's contents with Key,
	// and the temporary files are sized by the narinfo's NarSize.
	Trusted []narinfo.PublicKey
	Level   zstd.EncoderLevel
	TempDir string
	Jobs    int // paths in flight, default 4
	// Prune deletes the objects the rewritten narinfos no longer point
	// at, once no narinfo in the cache does.
	Prune bool

	beforeWrite func() error // IndexAll's: nix-cache-info, once
}

// IndexResult is the outcome of indexing one path.
type IndexResult struct {
	Result
	OldURL string // the object the narinfo pointed at before, if it changed
	NewURL string
}

// IndexAll indexes the paths of the hash parts, Jobs at a time, calling
// report once per path, then prunes if asked. The error is about pruning
// only; every path's failure goes to report.
func (c *Cache) IndexAll(ctx context.Context, hashes []string, opts IndexOptions, report func(IndexResult)) error {
	if opts.Jobs <= 0 {
		opts.Jobs = 4
	}
	// Narinfo hash parts name paths of /nix/store (HashPart), and so do
	// the narinfos written.
	if err := c.CheckStoreDir(ctx, storepath.DefaultStoreDir); err != nil {
		return err
	}
	// nix-cache-info is written before the first path that will be, so
	// that a run whose paths are all refused writes nothing.
	var infoOnce sync.Once
	var infoErr error
	opts.beforeWrite = func() error {
		infoOnce.Do(func() {
			if err := c.EnsureCacheInfo(ctx); err != nil {
				infoErr = fmt.Errorf("nix-cache-info: %w", err)
			}
		})
		return infoErr
	}
	work := make(chan string)
	var (
		mu       sync.Mutex
		replaced []string // old objects
	)
	var wg sync.WaitGroup
	for range opts.Jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for h := range work {
				r := c.Index(ctx, h, opts)
				if r.OldURL != "" {
					mu.Lock()
					replaced = append(replaced, r.OldURL)
					mu.Unlock()
				}
				report(r)
			}
		}()
	}
	for _, h := range hashes {
		work <- h
	}
	close(work)
	wg.Wait()
	if !opts.Prune || len(replaced) == 0 {
		return nil
	}
	return c.prune(ctx, replaced)
}

// Index gives the path of hash part hash a chunk index, re-encoding its
// object unless it is uncompressed. A path whose index verifies with the
// key is left alone.
func (c *Cache) Index(ctx context.Context, hash string, opts IndexOptions) IndexResult {
	if opts.Level == 0 {
		opts.Level = zstd.SpeedDefault
	}
	r := IndexResult{Result: Result{Path: hash}}
	ni, err := c.readNarinfo(ctx, hash)
	if err != nil {
		r.Err = err
		return r
	}
	r.Path = ni.StorePath.Abs(storeDirOf(ni))
	if err := trusted(ni, opts); err != nil {
		r.Err = err
		return r
	}
	if opts.beforeWrite != nil {
		if r.Err = opts.beforeWrite(); r.Err != nil {
			return r
		}
	}
	payload, layout2 := c.currentIndex(ctx, ni, opts.Key.Public())
	switch {
	case layout2 && !hasIndexLines(ni):
		r.Skipped = true
		return r
	case layout2:
		// Indexed by this narfs, the narinfo not yet cleaned (an
		// interrupted upgrade): drop its lines.
		dropIndexLines(ni)
		r.Err = c.commit(ctx, &staged{ni: ni})
		return r
	case payload != nil:
		// Layout 1 (index named by narinfo lines): the payload stays, it
		// moves under its alias with its signature, and the narinfo
		// loses the lines (every other line kept, Nix's Sig lines
		// included: they do not cover them).
		obj, err := sealIndex(ni, payload, opts.Key)
		if err == nil {
			err = c.putBytes(ctx, chunkindex.AliasKey(ni.StorePath.Hash), obj, typeIndex)
		}
		if err == nil {
			err = c.commit(ctx, &staged{ni: ni})
		}
		r.Err = err
		return r
	}
	r.OldURL, r.NewURL, r.Err = c.index(ctx, ni, opts)
	return r
}

// hasIndexLines reports whether the narinfo names its index the layout-1
// way.
func hasIndexLines(ni *narinfo.NarInfo) bool {
	for _, k := range []string{chunkindex.KeyURL, chunkindex.KeySize, chunkindex.KeySig} {
		if _, ok := ni.Get(k); ok {
			return true
		}
	}
	return false
}

// currentIndex returns the payload of the path's index when one is
// signed by pub and describes the narinfo's NAR and object: the layout-2
// object under its alias (layout2 true), else the layout-1 object its
// narinfo lines name. Nil when there is none.
func (c *Cache) currentIndex(ctx context.Context, ni *narinfo.NarInfo, pub narinfo.PublicKey) (payload []byte, layout2 bool) {
	check := func(key string, limit int64) *chunkindex.Object {
		data, err := backend.ReadAll(ctx, c.B, key, limit)
		if err != nil {
			return nil
		}
		o, _, err := chunkindex.VerifyObject(ni, data, []narinfo.PublicKey{pub})
		if err != nil {
			return nil
		}
		if x, err := chunkindex.DecodeFor(o.Payload, ni.NarSize); err != nil || x.Matches(ni) != nil {
			return nil
		}
		return o
	}
	bound := chunkindex.ObjectBound(ni.NarSize)
	if o := check(chunkindex.AliasKey(ni.StorePath.Hash), bound); o != nil && o.Version == 2 {
		return o.Payload, true
	}
	url, size, ok, err := chunkindex.Location(ni)
	if !ok || err != nil {
		return nil, false
	}
	if o := check(url, min(size, bound)); o != nil && o.Version == 1 {
		return o.Payload, false
	}
	return nil, false
}

// trusted says whether Index may sign what the narinfo describes: its
// signature by a key of opts.Trusted or opts.Key makes NarHash and NarSize
// the path's, so the NAR checked against them is, and NarSize bounds the
// temporary NAR. Without that, the index would put the operator's
// signature on whatever a key-less writer of the cache chose. A content
// address is not enough here, unlike for readers: it vouches for NarHash
// but not NarSize, so a writer could still size the temporary files.
func trusted(ni *narinfo.NarInfo, opts IndexOptions) error {
	keys := opts.Trusted
	if len(opts.Key.Key) == ed25519.PrivateKeySize {
		keys = append([]narinfo.PublicKey{opts.Key.Public()}, keys...)
	}
	if _, err := ni.Verify(keys); err != nil {
		// err wraps narinfo.ErrUntrusted.
		return fmt.Errorf("not indexing (it would sign what no one vouched for): %w; trusted are %s and the keys of --trusted-public-keys", err, opts.Key.Name)
	}
	return nil
}

func (c *Cache) index(ctx context.Context, ni *narinfo.NarInfo, opts IndexOptions) (oldURL, newURL string, err error) {
	comp := ni.EffectiveCompression()
	// Download once, decompressing into a temporary NAR.
	narFile, err := newTemp(opts.TempDir, "narfs-index-*.nar")
	if err != nil {
		return "", "", err
	}
	defer narFile.Close()
	o, err := c.B.Get(ctx, ni.URL)
	if err != nil {
		return "", "", err
	}
	defer o.Body.Close()
	// Both temporary files are bounded by the narinfo's sizes, which its
	// signature vouches for (Index refuses any other): the object by
	// objectBound, the NAR by NarSize.
	if bound := objectBound(ni); o.Size > bound {
		return "", "", fmt.Errorf("%s: %d bytes: %w: the narinfo allows %d", ni.URL, o.Size, errTooLong, bound)
	}
	file := newNarDigest()
	raw := io.TeeReader(newBoundedReader(o.Body, objectBound(ni), ni.URL), file)
	dec, err := compress.NewReader(comp, raw)
	if err != nil {
		return "", "", err
	}
	d := newNarDigest()
	l, err := scan(newBoundedReader(dec, ni.NarSize, "NAR"), d, narFile)
	dec.Close()
	if err != nil {
		return "", "", fmt.Errorf("%s: decoding the NAR: %w", ni.URL, err)
	}
	if _, err := io.Copy(io.Discard, raw); err != nil {
		return "", "", err
	}
	if err := d.check(ni.NarHash, ni.NarSize); err != nil {
		return "", "", fmt.Errorf("%s: %w", ni.URL, err)
	}
	if (ni.FileSize != 0 && file.n != ni.FileSize) || (ni.FileHash != nil && ni.FileHash.Algo == "sha256" && !file.sum().Equal(*ni.FileHash)) {
		return "", "", fmt.Errorf("%s: %d bytes with hash %s, narinfo says FileSize %d, FileHash %s", ni.URL, file.n, file.sum(), ni.FileSize, ni.FileHash)
	}
	if _, err := narFile.Seek(0, io.SeekStart); err != nil {
		return "", "", err
	}

	var ch *chunked
	if comp == "none" {
		// The object is the NAR: chunks are NAR ranges, nothing moves.
		if ch, err = cut(narFile, io.Discard, l, ni.NarHash, ni.NarSize, "none", opts.Level); err != nil {
			return "", "", err
		}
	} else {
		obj, err := newTemp(opts.TempDir, "narfs-index-*.nar.zst")
		if err != nil {
			return "", "", err
		}
		defer obj.Close()
		if ch, err = cut(narFile, obj, l, ni.NarHash, ni.NarSize, "zstd", opts.Level); err != nil {
			return "", "", err
		}
		newURL = objectKey(ch.fileHash, "zstd")
		if err := c.putObject(ctx, newURL, obj.File, ch.size, typeNAR); err != nil {
			return "", "", err
		}
		if newURL != ni.URL {
			oldURL = ni.URL
		}
		// Nix's fingerprint covers none of these, so the Sig lines
		// stay valid.
		fh := ch.fileHash
		ni.URL, ni.Compression, ni.FileHash, ni.FileSize = newURL, "zstd", &fh, ch.size
	}
	if err := c.putIndex(ctx, ni, ch, l, opts.Key); err != nil {
		return "", "", err
	}
	if err := c.commit(ctx, &staged{ni: ni}); err != nil {
		return "", "", err
	}
	return oldURL, newURL, nil
}

// prune deletes the candidate objects that no narinfo in the cache names
// any more (two paths with identical contents share an object).
func (c *Cache) prune(ctx context.Context, candidates []string) error {
	hashes, err := AllHashes(ctx, c.B)
	if errors.Is(err, backend.ErrUnsupported) {
		return fmt.Errorf("--prune needs a store that can be listed: %w", err)
	}
	if err != nil {
		return err
	}
	used := map[string]bool{}
	for _, h := range hashes {
		ni, err := c.readNarinfo(ctx, h)
		if err != nil {
			return fmt.Errorf("prune: not deleting anything: %w", err)
		}
		used[ni.URL] = true
	}
	for _, k := range candidates {
		if used[k] || strings.Contains(k, "://") {
			continue
		}
		if err := c.W.Delete(ctx, k); err != nil {
			return err
		}
		c.Log.Info("pruned", "object", k)
	}
	return nil
}
