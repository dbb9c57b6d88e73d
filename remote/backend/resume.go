package backend

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// rangeFunc opens exactly n bytes at off with one request (plus the
// retries a backend makes before response headers).
type rangeFunc func(ctx context.Context, key string, off, n int64) (io.ReadCloser, error)

// resumer is implemented by the network backends for getRangeResuming.
type resumer interface {
	fmt.Stringer
	retryOpts() Options
}

func (b *httpBackend) retryOpts() Options { return b.opts }

// getRangeResuming opens a range and, if the body fails part way (reset
// connection, stall, truncation), reopens the remainder instead of failing
// the caller: ranges are idempotent, and a FUSE read that fails is an EIO
// in some user's build. At most MaxAttempts body failures are absorbed.
func getRangeResuming(ctx context.Context, b resumer, open rangeFunc, key string, off, n int64) (io.ReadCloser, error) {
	rc, err := open(ctx, key, off, n)
	if err != nil {
		return nil, err
	}
	return &resumeReader{ctx: ctx, b: b, open: open, key: key, off: off, left: n, rc: rc}, nil
}

type resumeReader struct {
	ctx      context.Context
	b        resumer
	open     rangeFunc
	key      string
	off      int64 // offset of the next byte
	left     int64
	rc       io.ReadCloser // nil after a failure until reopened
	failures int
}

func (r *resumeReader) Read(p []byte) (int, error) {
	for {
		if r.left <= 0 {
			return 0, io.EOF
		}
		if r.rc == nil {
			rc, err := r.open(r.ctx, r.key, r.off, r.left)
			if err != nil {
				return 0, err
			}
			r.rc = rc
		}
		// Never ask for more than is left, so off and left stay exact
		// whatever the reader below does with a larger buffer.
		if int64(len(p)) > r.left {
			p = p[:r.left]
		}
		n, err := r.rc.Read(p)
		if n < 0 || n > len(p) {
			n, err = 0, fmt.Errorf("%s: get %s: body Read returned an invalid count", r.b, keyName(r.key))
		}
		r.off += int64(n)
		r.left -= int64(n)
		if err == nil || err == io.EOF && r.left == 0 {
			return n, err
		}
		if err == io.EOF {
			err = io.ErrUnexpectedEOF // exactReader prevents this; be safe
		}
		r.rc.Close()
		r.rc = nil
		if n > 0 {
			// Hand over what arrived; the next Read reopens the rest.
			return n, nil
		}
		r.failures++
		opts := r.b.retryOpts()
		if errors.Is(err, ErrRange) || r.failures >= opts.MaxAttempts {
			return 0, err
		}
		if cerr := r.ctx.Err(); cerr != nil {
			if errors.Is(cerr, context.DeadlineExceeded) {
				return 0, atDeadline(err)
			}
			return 0, err
		}
		opts.Logger.Debug("resuming range after body error", "cache", r.b.String(), "key", keyName(r.key),
			"offset", r.off, "left", r.left, "failure", r.failures, "err", err)
		// The resumption shares the caller's deadline: a backoff that
		// would outlast it fails now, with the body error as the cause.
		if err := sleepBeforeRetry(r.ctx, backoff(opts.RetryBaseDelay, opts.RetryMaxDelay, r.failures), err); err != nil {
			return 0, err
		}
	}
}

func (r *resumeReader) Close() error {
	if r.rc == nil {
		return nil
	}
	err := r.rc.Close()
	r.rc = nil
	return err
}
