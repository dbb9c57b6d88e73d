package upstream

import (
	"context"
	"strings"

	"github.com/narfs/narfs/remote/storepath"
)

// List calls fn with the hash part of every narinfo the cache holds, in
// no particular order, until fn returns an error (returned as is). Only
// listable backends (file://, s3://) can do this: the others return
// backend.ErrUnsupported. Nothing is resolved: the key alone carries no
// name.
func (c *Cache) List(ctx context.Context, fn func(hash string) error) error {
	return c.raw.List(ctx, ".narinfo", func(key string) error {
		h := strings.TrimSuffix(key, ".narinfo")
		if !storepath.ValidHashPart(h) {
			return nil
		}
		return fn(h)
	})
}
