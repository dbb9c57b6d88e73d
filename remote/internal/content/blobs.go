package content

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/narfs/narfs/remote/blob"
	"github.com/narfs/narfs/remote/internal/trust"
	"github.com/narfs/narfs/remote/internal/tune"
	"github.com/narfs/narfs/remote/localcache"
)

// Lock order: see store.go (blobsMu → blob.Blob's mu → localcache's mu;
// raMu and source.mu are leaves).

// Blob is an indexed path's blob, open while readers use it; one per
// chunked key for every cache that reaches the path.
type Blob struct {
	key string
	e   *localcache.Entry // pinned while open
	b   *blob.Blob
	src *source
	// protected by Store.blobsMu
	refs int
	gen  int // bumps at each open, so a stale linger timer does nothing

	// Small files read one after another from nearby chunks (a package's
	// modules, a directory's headers) widen how many chunks after a small
	// file's own are fetched with it: one request instead of one each.
	raMu      sync.Mutex
	lastSmall int // chunk of the last small file's first read, -1 none
	smallRA   int // chunks fetched after a small file's own

	filling atomic.Bool // a small path's fill has been started
}

// fill starts background requests for every missing chunk of a path
// stored in at most limit bytes, once per open blob, from chunk from on
// (where the first reader is: what it reads next is likely near), and
// waits for none. Their decoding takes at most Store.background's cores
// at once; a read that needs one of their chunks hurries it.
func (r *Blob) fill(limit int64, from int) {
	x := r.b.Index()
	if x.FileSize > limit || r.filling.Swap(true) {
		return
	}
	r.b.Prefetch(0, len(x.Chunks), from)
}

// smallReadahead returns how many chunks after chunk c to fetch with a
// small file there, and records the read.
func (r *Blob) smallReadahead(c int) int {
	r.raMu.Lock()
	defer r.raMu.Unlock()
	if r.lastSmall >= 0 && c >= r.lastSmall-1 && c <= r.lastSmall+r.smallRA+2 {
		r.smallRA = min(max(2*r.smallRA, 1), tune.MaxSmallReadahead)
	} else {
		r.smallRA = 1
	}
	r.lastSmall = c
	return r.smallRA
}

// source is a shared blob's way to its chunks: the first opener's cache,
// until a request to it fails for a reason of its own (not a chunk that
// failed verification, not the caller's context): then the latest other
// opener's. Which cache answers never chooses bytes.
type source struct {
	mu          sync.Mutex // protects cur and latest
	cur, latest *Origin
}

func (s *source) offer(o *Origin) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latest = o
}

func (s *source) current() *Origin {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur
}

func (s *source) GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	o := s.current()
	rc, err := o.Source.GetRange(ctx, key, off, n)
	if err == nil || ctx.Err() != nil {
		return rc, err
	}
	s.mu.Lock()
	next := s.latest
	if next.ID != o.ID && s.cur == o {
		s.cur = next
	}
	next = s.cur
	s.mu.Unlock()
	if next.ID == o.ID {
		return nil, err
	}
	o.Log.Warn("chunks of a path shared with another cache failed here; asking that cache", "to", next.ID, "err", err)
	return next.Source.GetRange(ctx, key, off, n)
}

// OpenBlob returns the indexed path's blob, creating its local cache
// entry (an empty sparse blob) the first time. Release it.
func (s *Store) OpenBlob(v *trust.Listing, p *trust.Path, o Origin) (*Blob, error) {
	key := trust.ChunkedKey(p, v)
	if r := s.refBlob(key, &o); r != nil {
		return r, nil
	}
	// Created outside blobsMu: the files, their checks and the marks read
	// are I/O, and other paths' opens must not wait for them.
	_, err, _ := s.opening.Do(key, func() (any, error) {
		if s.refBlob(key, nil) != nil {
			return nil, nil
		}
		r, err := s.newBlob(key, v, p, &o)
		if err != nil {
			return nil, err
		}
		s.blobsMu.Lock()
		defer s.blobsMu.Unlock()
		if s.bg.Err() != nil {
			r.b.Close()
			r.e.Release()
			return nil, errClosed
		}
		s.blobs[key] = r // refs 0: each caller takes its own below
		return nil, nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.StorePath, err)
	}
	if r := s.refBlob(key, &o); r != nil {
		return r, nil
	}
	return nil, fmt.Errorf("%s: %w", p.StorePath, errClosed)
}

// refBlob takes a reference on the open blob key, if there is one, and
// offers it o's source (nil: none).
func (s *Store) refBlob(key string, o *Origin) *Blob {
	s.blobsMu.Lock()
	defer s.blobsMu.Unlock()
	r, ok := s.blobs[key]
	if !ok {
		return nil
	}
	if o != nil {
		r.refs++
		r.gen++
		r.src.offer(o)
	}
	return r
}

func (s *Store) newBlob(key string, v *trust.Listing, p *trust.Path, o *Origin) (*Blob, error) {
	e, err := s.cache.Acquire(key)
	if errors.Is(err, localcache.ErrMiss) {
		e, err = s.createBlob(key, v, o)
	}
	if err != nil {
		return nil, err
	}
	bf, err := e.OpenData(blob.BlobFile)
	if err != nil {
		e.Release()
		return nil, err
	}
	mf, err := e.OpenData(blob.MarksFile)
	if err != nil {
		bf.Close()
		e.Release()
		return nil, err
	}
	if fi, err := bf.Stat(); err != nil || fi.Size() != v.Index().NarSize {
		bf.Close()
		mf.Close()
		e.Release()
		s.cache.Forget(key)
		return nil, fmt.Errorf("%w: blob is not NarSize bytes", localcache.ErrLocal)
	}
	r := &Blob{key: key, e: e, src: &source{cur: o, latest: o}, lastSmall: -1}
	r.b, err = blob.New(s.bg, v.Index(), bf, mf, r.src, blob.Options{
		FetchDeadline: s.o.Deadline,
		Logger:        o.Log.With("path", p.StorePath.String()),
		OnFetch:       func(n int64) { r.src.current().Counters.ChunkBytes(n) },
		Background:    s.background,
		Ranges:        o.Ranges,
		Hold:          func() func() { return s.hold(r) },
	})
	if err != nil {
		bf.Close()
		mf.Close()
		e.Release()
		return nil, fmt.Errorf("%w: %w", localcache.ErrLocal, err)
	}
	return r, nil
}

func (s *Store) createBlob(key string, v *trust.Listing, o *Origin) (*localcache.Entry, error) {
	pend, err := s.cache.Begin()
	if err != nil {
		return nil, err
	}
	defer pend.Abort()
	for _, f := range []struct {
		name string
		size int64
	}{{blob.BlobFile, v.Index().NarSize}, {blob.MarksFile, int64(len(v.Index().Chunks))}} {
		fh, err := pend.CreateFile(f.name)
		if err != nil {
			return nil, err
		}
		err = fh.Truncate(f.size)
		if cerr := fh.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %w", localcache.ErrLocal, err)
		}
	}
	if err := pend.WriteMeta(blob.IndexFile, v.Object()); err != nil {
		return nil, err
	}
	// Accounted at its full size: it may fill up to that.
	e, err := pend.Commit(key, v.Index().NarSize)
	if err == nil && o.Record != nil {
		o.Record()
	}
	return e, err
}

// ReleaseBlob ends a use of r; the blob stays open tune.BlobLinger for
// the next.
func (s *Store) ReleaseBlob(r *Blob) {
	s.blobsMu.Lock()
	defer s.blobsMu.Unlock()
	r.refs--
	if r.refs > 0 {
		return
	}
	gen := r.gen
	time.AfterFunc(tune.BlobLinger, func() {
		s.blobsMu.Lock()
		defer s.blobsMu.Unlock()
		if r.refs == 0 && r.gen == gen && s.blobs[r.key] == r {
			delete(s.blobs, r.key)
			r.b.Close()
			r.e.Release()
		}
	})
}

// hold keeps an open blob open until the returned func is called, as a
// reader does: blob.Options.Hold, so that a blob streaming its object
// from a cache that ignores Range is not closed under the stream when its
// last reader goes.
func (s *Store) hold(r *Blob) func() {
	s.blobsMu.Lock()
	r.refs++
	s.blobsMu.Unlock()
	return func() { s.ReleaseBlob(r) }
}
