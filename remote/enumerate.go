package remote

import (
	"context"
	"errors"
	"sync"

	"github.com/narfs/narfs/remote/backend"
	"github.com/narfs/narfs/remote/internal/tune"
)

// ErrNotListable: the cache cannot enumerate its paths (plain HTTP).
var ErrNotListable = backend.ErrUnsupported

// paths calls fn for every trusted store path the cache holds, in no
// particular order. Only listable backends (file://, s3://) can do this:
// the others return ErrNotListable. Each hit is resolved (one narinfo GET,
// cached) since the key alone carries no name; paths that are missing,
// untrusted or corrupt are skipped.
func (c *cache) paths(ctx context.Context, fn func(*PathInfo)) error {
	hashes := make(chan string)
	var (
		wg sync.WaitGroup
		mu sync.Mutex // serialises fn
	)
	for range tune.ResolveWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for h := range hashes {
				p, err := c.resolveHash(ctx, h)
				if err != nil {
					if !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrUntrusted) && !errors.Is(err, ErrCorrupt) {
						c.log.Warn("listing the cache", "hash", h, "err", err)
					}
					continue
				}
				mu.Lock()
				fn(p)
				mu.Unlock()
			}
		}()
	}
	err := c.up.List(ctx, func(h string) error {
		select {
		case hashes <- h:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	close(hashes)
	wg.Wait()
	return err
}
