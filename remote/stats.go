package remote

import (
	"context"
	"io"
	"strings"
	"sync/atomic"

	"github.com/narfs/narfs/remote/backend"
)

// Stats counts what narfs asked of the cache and served, from the start:
// the amplification of a workload is UpstreamBytes / the bytes it read.
type Stats struct {
	NarinfoGets int64 // GETs of <hash>.narinfo
	ListingGets int64 // GETs of <hash>.ls
	IndexGets   int64 // GETs of chunk indexes (.nidx)
	NarGets     int64 // GETs of NAR files; a parallel download counts once
	// NarParts is the ranged requests of parallel NAR downloads.
	NarParts  int64
	OtherGets int64
	// ChunkBytes is the stored bytes of NAR chunks requested by ranged
	// reads of indexed paths (their GETs count in NarGets).
	ChunkBytes    int64
	UpstreamBytes int64 // body bytes received from the cache, all objects
	NarBytes      int64 // body bytes of NAR objects (compressed, as sent)
	Fetches       int64 // NARs fetched, verified and extracted
	Corrupt       int64 // NARs that failed verification
}

type counters struct {
	narinfoGets, listingGets, narGets, otherGets atomic.Int64
	indexGets, chunkBytes, narParts              atomic.Int64
	upstreamBytes, narBytes                      atomic.Int64
	fetches, corrupt                             atomic.Int64
}

func (c *counters) snapshot() Stats {
	return Stats{
		NarinfoGets:   c.narinfoGets.Load(),
		ListingGets:   c.listingGets.Load(),
		NarGets:       c.narGets.Load(),
		NarParts:      c.narParts.Load(),
		OtherGets:     c.otherGets.Load(),
		IndexGets:     c.indexGets.Load(),
		ChunkBytes:    c.chunkBytes.Load(),
		UpstreamBytes: c.upstreamBytes.Load(),
		NarBytes:      c.narBytes.Load(),
		Fetches:       c.fetches.Load(),
		Corrupt:       c.corrupt.Load(),
	}
}

// countingBackend counts requests by kind and the bytes their bodies
// carried; every object narfs reads goes through it.
type countingBackend struct {
	backend.Backend
	c *counters
	// parts counts GetRange as parts of a parallel download, which
	// counted once in narGets when it started.
	parts bool
}

func (b countingBackend) kind(key string) (gets *atomic.Int64, nar bool) {
	switch {
	case strings.HasSuffix(key, ".narinfo"):
		return &b.c.narinfoGets, false
	case strings.HasSuffix(key, ".ls"):
		return &b.c.listingGets, false
	case strings.HasSuffix(key, ".nidx"):
		return &b.c.indexGets, false
	case key == "nix-cache-info":
		return &b.c.otherGets, false
	default:
		return &b.c.narGets, true
	}
}

func (b countingBackend) Get(ctx context.Context, key string) (*backend.Object, error) {
	gets, nar := b.kind(key)
	gets.Add(1)
	obj, err := b.Backend.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	obj.Body = &countingBody{ReadCloser: obj.Body, c: b.c, nar: nar}
	return obj, nil
}

func (b countingBackend) GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	gets, nar := b.kind(key)
	if b.parts {
		gets = &b.c.narParts
	}
	gets.Add(1)
	rc, err := b.Backend.GetRange(ctx, key, off, n)
	if err != nil {
		return nil, err
	}
	return &countingBody{ReadCloser: rc, c: b.c, nar: nar}, nil
}

type countingBody struct {
	io.ReadCloser
	c   *counters
	nar bool
}

func (r *countingBody) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	r.c.upstreamBytes.Add(int64(n))
	if r.nar {
		r.c.narBytes.Add(int64(n))
	}
	return n, err
}
