package backend

import (
	"context"
	"io"
	"sync"
	"time"
)

// WithProgressDeadline returns a context whose deadline is wait from now
// and moves 1/minRate s later for every byte reported to progress: an
// operation that gets no answer ends after wait, retries included, and
// one that moves n bytes at minRate or faster ends by wait + n/minRate at
// the latest (a static deadline of that length would let a server that
// never answers hold the operation for all of it, one attempt after
// another). The parent's deadline and cancellation still apply. Err is
// context.DeadlineExceeded once the deadline passed. cancel releases the
// timer; call it when the operation ends.
func WithProgressDeadline(parent context.Context, wait time.Duration, minRate int64) (ctx context.Context, progress func(n int), cancel context.CancelFunc) {
	if minRate <= 0 {
		minRate = DefaultMinRate
	}
	inner, cancelInner := context.WithCancelCause(parent)
	c := &progressCtx{
		Context:  inner,
		cancel:   cancelInner,
		perByte:  float64(time.Second) / float64(minRate),
		deadline: time.Now().Add(wait),
	}
	c.mu.Lock()
	c.timer = time.AfterFunc(wait, c.expire)
	c.mu.Unlock()
	return c, c.progress, func() { c.end(context.Canceled) }
}

// progressCtx is WithProgressDeadline's context: a cancel context of the
// parent (Done, Value, and so context.Cause and the children's
// propagation) that its timer cancels with context.DeadlineExceeded as
// the cause, and whose Err and Deadline say so.
type progressCtx struct {
	context.Context // context.WithCancelCause(parent)
	cancel          context.CancelCauseFunc
	perByte         float64 // nanoseconds of deadline per byte of progress

	mu       sync.Mutex // protects the fields below
	deadline time.Time
	timer    *time.Timer
	expired  bool // set before cancel, so that Err is right once Done is
	ended    bool
}

func (c *progressCtx) Deadline() (time.Time, bool) {
	c.mu.Lock()
	d := c.deadline
	c.mu.Unlock()
	if pd, ok := c.Context.Deadline(); ok && pd.Before(d) {
		return pd, true
	}
	return d, true
}

func (c *progressCtx) Err() error {
	c.mu.Lock()
	expired := c.expired
	c.mu.Unlock()
	if expired {
		return context.DeadlineExceeded
	}
	return c.Context.Err()
}

func (c *progressCtx) progress(n int) {
	if n <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return
	}
	c.deadline = c.deadline.Add(time.Duration(float64(n) * c.perByte))
	c.timer.Reset(time.Until(c.deadline))
}

// expire ends the context unless progress moved the deadline since the
// timer was set.
func (c *progressCtx) expire() {
	c.mu.Lock()
	if left := time.Until(c.deadline); left > 0 && !c.ended {
		c.timer.Reset(left)
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	c.end(context.DeadlineExceeded)
}

func (c *progressCtx) end(err error) {
	c.mu.Lock()
	if c.ended {
		c.mu.Unlock()
		return
	}
	c.ended = true
	c.expired = err == context.DeadlineExceeded && c.Context.Err() == nil
	c.timer.Stop()
	c.mu.Unlock()
	c.cancel(err)
}

// ProgressDeadlines returns b with each request bounded as
// WithProgressDeadline says: Get and GetRange until their body is closed
// (counting the bytes read from it), Stat and Delete by wait. Put counts
// the bytes read from its reader, List listEntryBytes per key listed (a
// listing that stops coming ends after wait). Commands without readers to answer
// (prefetch, push, index, verify) use it so that --timeout bounds what a
// server that never answers costs, retries included.
func ProgressDeadlines(b Backend, wait time.Duration, minRate int64) Backend {
	p := progressBackend{Backend: b, wait: wait, minRate: minRate}
	if w, ok := b.(Writer); ok {
		return progressWriter{p, w}
	}
	return p
}

type progressBackend struct {
	Backend
	wait    time.Duration
	minRate int64
}

var (
	_ Backend = progressBackend{}
	_ Writer  = progressWriter{}
)

func (p progressBackend) Get(ctx context.Context, key string) (*Object, error) {
	ctx, progress, cancel := WithProgressDeadline(ctx, p.wait, p.minRate)
	o, err := p.Backend.Get(ctx, key)
	if err != nil {
		cancel()
		return nil, err
	}
	o.Body = &progressBody{ReadCloser: o.Body, progress: progress, cancel: cancel}
	return o, nil
}

func (p progressBackend) GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	ctx, progress, cancel := WithProgressDeadline(ctx, p.wait, p.minRate)
	rc, err := p.Backend.GetRange(ctx, key, off, n)
	if err != nil {
		cancel()
		return nil, err
	}
	return &progressBody{ReadCloser: rc, progress: progress, cancel: cancel}, nil
}

// listEntryBytes is the progress a listed key counts for: about what an
// S3 ListObjectsV2 page spends on one (key, size, ETag, date, class).
const listEntryBytes = 256

func (p progressBackend) List(ctx context.Context, suffix string, fn func(key string) error) error {
	ctx, progress, cancel := WithProgressDeadline(ctx, p.wait, p.minRate)
	defer cancel()
	return p.Backend.List(ctx, suffix, func(key string) error {
		progress(listEntryBytes + len(key))
		return fn(key)
	})
}

func (p progressBackend) Stat(ctx context.Context, key string) (Info, error) {
	ctx, cancel := context.WithTimeout(ctx, p.wait)
	defer cancel()
	return p.Backend.Stat(ctx, key)
}

// progressBody reports the bytes read through it and ends the request's
// context on Close.
type progressBody struct {
	io.ReadCloser
	progress func(int)
	cancel   context.CancelFunc
}

func (b *progressBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.progress(n)
	return n, err
}

func (b *progressBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

type progressWriter struct {
	progressBackend
	w Writer
}

func (p progressWriter) Put(ctx context.Context, key string, r io.Reader, size int64, contentType string) error {
	ctx, progress, cancel := WithProgressDeadline(ctx, p.wait, p.minRate)
	defer cancel()
	var pr io.Reader = progressReader{r, progress}
	if rs, ok := r.(io.ReadSeeker); ok {
		// http rewinds a seekable body to retry the upload.
		pr = progressReadSeeker{progressReader{r, progress}, rs}
	}
	return p.w.Put(ctx, key, pr, size, contentType)
}

func (p progressWriter) Delete(ctx context.Context, key string) error {
	ctx, cancel := context.WithTimeout(ctx, p.wait)
	defer cancel()
	return p.w.Delete(ctx, key)
}

type progressReader struct {
	r        io.Reader
	progress func(int)
}

func (r progressReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.progress(n)
	return n, err
}

type progressReadSeeker struct {
	progressReader
	s io.Seeker
}

func (r progressReadSeeker) Seek(off int64, whence int) (int64, error) {
	return r.s.Seek(off, whence)
}
