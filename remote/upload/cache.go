package upload

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/narfs/narfs/remote/backend"
	"github.com/narfs/narfs/remote/chunkindex"
	"github.com/narfs/narfs/remote/narinfo"
	"github.com/narfs/narfs/remote/storepath"
)

// Content types of what a cache holds, as Nix uploads them.
const (
	typeNarinfo   = "text/x-nix-narinfo"
	typeCacheInfo = "text/x-nix-cache-info"
	typeNAR       = "application/x-nix-nar"
	typeListing   = "application/json"
	typeIndex     = "application/x-narfs-index"
)

// CacheInfo is the nix-cache-info narfs writes into a cache that has
// none. Its last line tells narfs readers that indexes can be fetched
// with the narinfo (chunkindex.AliasKey); Nix ignores it.
const CacheInfo = "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 40\n" + aliasLine

const aliasLine = chunkindex.CacheInfoKey + ": 1\n"

// Cache is a binary cache opened for writing (Open), or for Verify
// alone (W nil).
type Cache struct {
	B   backend.Backend // read side
	W   backend.Writer  // write side of the same store
	Log *slog.Logger

	aliasesOnce sync.Once
	aliases     bool // nix-cache-info says the cache keeps index aliases
}

// Open opens storeURL for reading and writing. Every request is one
// operation bounded by opts.RequestTimeout (default 30s), retries
// included, until bytes move, then by that plus its bytes at
// opts.MinRate (backend.ProgressDeadlines): a cache that never answers
// fails a request after RequestTimeout, not after every attempt's.
func Open(ctx context.Context, storeURL string, opts backend.Options) (*Cache, error) {
	u, err := backend.ParseStoreURL(storeURL)
	if err != nil {
		return nil, err
	}
	b, _, err := backend.OpenWriter(ctx, u, opts)
	if err != nil {
		return nil, err
	}
	b = deadlines(b, opts)
	return &Cache{B: b, W: b.(backend.Writer), Log: logger(opts)}, nil
}

// OpenRead opens storeURL for Verify alone, its requests bounded as
// Open's.
func OpenRead(ctx context.Context, storeURL string, opts backend.Options) (*Cache, error) {
	u, err := backend.ParseStoreURL(storeURL)
	if err != nil {
		return nil, err
	}
	b, err := backend.Open(ctx, u, opts)
	if err != nil {
		return nil, err
	}
	return &Cache{B: deadlines(b, opts), Log: logger(opts)}, nil
}

func deadlines(b backend.Backend, opts backend.Options) backend.Backend {
	wait := opts.RequestTimeout
	if wait <= 0 {
		wait = 30 * time.Second
	}
	return backend.ProgressDeadlines(b, wait, opts.MinRate)
}

func logger(opts backend.Options) *slog.Logger {
	if opts.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return opts.Logger
}

// Close closes the backend.
func (c *Cache) Close() error { return c.B.Close() }

// exists reports whether key is in the cache.
func (c *Cache) exists(ctx context.Context, key string) (bool, backend.Info, error) {
	info, err := c.B.Stat(ctx, key)
	switch {
	case err == nil:
		return true, info, nil
	case errors.Is(err, backend.ErrNotFound):
		return false, info, nil
	}
	return false, info, err
}

// putBytes stores a small object.
func (c *Cache) putBytes(ctx context.Context, key string, data []byte, contentType string) error {
	return c.W.Put(ctx, key, bytes.NewReader(data), int64(len(data)), contentType)
}

// putObject stores a large object from a seekable source, unless an
// object of that size is already at key: object keys are content
// hashes, so it holds the same bytes.
func (c *Cache) putObject(ctx context.Context, key string, r io.ReadSeeker, size int64, contentType string) error {
	ok, info, err := c.exists(ctx, key)
	if err != nil {
		return err
	}
	if ok && info.Size == size {
		return nil
	}
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return err
	}
	return c.W.Put(ctx, key, r, size, contentType)
}

// ErrStoreDir: the cache is for another store directory (its
// nix-cache-info's StoreDir), so writing it would put paths where no Nix
// that reads it looks.
var ErrStoreDir = errors.New("binary cache is for another store directory")

// CheckStoreDir refuses a cache whose nix-cache-info names a StoreDir
// other than storeDir, as Nix does before writing to (or reading) one. A
// cache without nix-cache-info, or without the line, is Nix's default,
// /nix/store: EnsureCacheInfo writes that.
func (c *Cache) CheckStoreDir(ctx context.Context, storeDir string) error {
	data, err := backend.ReadAll(ctx, c.B, "nix-cache-info", narinfo.MaxSize)
	if errors.Is(err, backend.ErrNotFound) {
		data, err = nil, nil
	}
	if err != nil {
		return err
	}
	info, err := narinfo.ParseCacheInfo(data)
	if err != nil {
		return fmt.Errorf("nix-cache-info: %w", err)
	}
	if have := cmp.Or(info.StoreDir, storepath.DefaultStoreDir); have != storeDir {
		// Nix's words: "binary cache '%s' is for Nix stores with prefix
		// '%s', not '%s'".
		return fmt.Errorf("%w: binary cache '%s' is for Nix stores with prefix %s, not %s (its nix-cache-info says StoreDir: %s)",
			ErrStoreDir, c.B, strconv.Quote(have), strconv.Quote(storeDir), strconv.Quote(have))
	}
	return nil
}

// EnsureCacheInfo writes nix-cache-info if the cache has none, and adds
// the index-alias line to one that lacks it (every other line is kept).
func (c *Cache) EnsureCacheInfo(ctx context.Context) error {
	data, err := backend.ReadAll(ctx, c.B, "nix-cache-info", narinfo.MaxSize)
	if errors.Is(err, backend.ErrNotFound) {
		return c.putBytes(ctx, "nix-cache-info", []byte(CacheInfo), typeCacheInfo)
	}
	if err != nil {
		return err
	}
	info, err := narinfo.ParseCacheInfo(data)
	if err != nil {
		return fmt.Errorf("nix-cache-info: %w", err)
	}
	if info.IndexAliases {
		return nil
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		data = append(data, '\n')
	}
	return c.putBytes(ctx, "nix-cache-info", append(data, aliasLine...), typeCacheInfo)
}

// readNarinfo fetches and parses <hash>.narinfo.
func (c *Cache) readNarinfo(ctx context.Context, hash string) (*narinfo.NarInfo, error) {
	data, err := backend.ReadAll(ctx, c.B, hash+".narinfo", narinfo.MaxSize)
	if err != nil {
		return nil, err
	}
	ni, err := narinfo.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s.narinfo: %w", hash, err)
	}
	if ni.StorePath.Hash != hash {
		return nil, fmt.Errorf("%s.narinfo: %w: it describes %s", hash, narinfo.ErrInvalid, ni.StorePath)
	}
	return ni, nil
}

// HashPart turns a command-line PATH (/nix/store/<hash>-<name>[/sub],
// <hash>-<name> or <hash>) into the hash part that names its narinfo.
func HashPart(storeDir, arg string) (string, error) {
	s := strings.TrimPrefix(arg, storeDir+"/")
	s, _, _ = strings.Cut(s, "/")
	s, _, _ = strings.Cut(s, "-")
	if !storepath.ValidHashPart(s) {
		return "", fmt.Errorf("%q is neither a store path nor a hash part", arg)
	}
	return s, nil
}

// objectKey is where an object of this file hash is stored.
func objectKey(fileHash storepath.Hash, compression string) string {
	key := "nar/" + storepath.EncodeNix32(fileHash.Digest) + ".nar"
	if compression == "zstd" {
		key += ".zst"
	}
	return key
}

// AllHashes lists the hash parts of every narinfo in the cache.
func AllHashes(ctx context.Context, b backend.Backend) ([]string, error) {
	var hs []string
	err := b.List(ctx, ".narinfo", func(key string) error {
		h := strings.TrimSuffix(key, ".narinfo")
		if storepath.ValidHashPart(h) {
			hs = append(hs, h)
		}
		return nil
	})
	return hs, err
}
