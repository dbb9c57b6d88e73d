package upstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/narfs/narfs/remote/backend"
	"github.com/narfs/narfs/remote/internal/tune"
	"github.com/narfs/narfs/remote/narinfo"
	"github.com/narfs/narfs/remote/stats"
)

// OpenNAR opens the NAR object of a narinfo and returns its body and the
// transport encoding to remove. An object larger than one part is read
// with parallel ranged requests; a server that cannot answer them
// exactly is not asked for ranges again: one that ignores Range is read
// from its answer to the first of them (a 200 with the whole object, so
// the NAR crosses the network once), one that adds a Content-Encoding per
// response with one GET.
func (c *Cache) OpenNAR(ctx context.Context, ni *narinfo.NarInfo) (io.ReadCloser, string, error) {
	popts := c.o.Parallel
	be := c.counted.For(stats.KindNar)
	if !c.o.SingleStream && !c.noRanges.Load() {
		size := ni.FileSize
		if size == 0 && ni.NarSize > FirstPart(popts) {
			// Compressed, it may still be large: ask. A failure here
			// is left to the GET that follows.
			if info, err := be.Stat(ctx, ni.URL); err == nil && info.ContentEncoding == "" {
				size = info.Size
			}
		}
		if size > FirstPart(popts) {
			rc, err := c.openParallel(ctx, ni.URL, size, popts)
			if err == nil || !errors.Is(err, backend.ErrUnsupported) && !errors.Is(err, backend.ErrRange) {
				return rc, "", err
			}
			// ErrRange: FileSize is wrong; the whole object tells the
			// truth and verification decides.
			if errors.Is(err, backend.ErrUnsupported) {
				c.noRanges.Store(true)
			}
			c.log.Info("reading NARs with one request", "url", ni.URL, "why", err)
		}
	}
	obj, err := be.Get(ctx, ni.URL)
	if err != nil {
		return nil, "", err
	}
	return obj.Body, obj.ContentEncoding, nil
}

// FirstPart is the size above which a NAR is fetched in parts.
func FirstPart(o backend.ParallelOptions) int64 {
	if o.FirstPart > 0 {
		return o.FirstPart
	}
	return backend.DefaultFirstPart
}

// openParallel starts a parallel reader and waits for its first bytes,
// so that a server that cannot serve ranges is found out before anything
// downstream has consumed a byte.
func (c *Cache) openParallel(ctx context.Context, key string, size int64, opts backend.ParallelOptions) (io.ReadCloser, error) {
	// One NAR GET, however many parts it takes.
	c.counters.narGets.Add(1)
	pr := backend.NewParallelReader(ctx, c.counted.Parts(), key, size, opts)
	first := make([]byte, tune.ParallelProbe)
	n, err := pr.Read(first)
	if n == 0 && err != nil {
		pr.Close()
		if err == io.EOF {
			err = fmt.Errorf("%w: empty object", backend.ErrRange)
		}
		return nil, err
	}
	if backend.ServedWhole(pr) {
		c.ranges.SetIgnored()
		if !c.noRanges.Swap(true) {
			c.log.Info("the cache ignores Range: NARs are read with one request, indexed paths by streaming their objects", "url", key)
		}
	}
	return &prefixed{Reader: io.MultiReader(bytes.NewReader(first[:n]), pr), c: pr}, nil
}

type prefixed struct {
	io.Reader
	c io.Closer
}

func (p *prefixed) Close() error { return p.c.Close() }
