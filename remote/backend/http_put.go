package backend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Put PUTs the object with Content-Length size. It is retried like the
// reads (Options.MaxAttempts, backoff, Retry-After, the deadline) only if
// r is an io.ReadSeeker, which is rewound to where it was for each
// attempt; any other reader gets a single attempt. A failing, short or
// long reader is never retried.
func (b *httpBackend) Put(ctx context.Context, key string, r io.Reader, size int64, contentType string) error {
	if err := checkSize(size); err != nil {
		return b.errorf("put", key, err)
	}
	attempts := 1
	var start int64
	rs, replayable := r.(io.ReadSeeker)
	if replayable {
		var err error
		if start, err = rs.Seek(0, io.SeekCurrent); err == nil {
			attempts = b.opts.MaxAttempts
		} else {
			replayable = false
		}
	}
	var hdr http.Header
	if contentType != "" {
		hdr = http.Header{"Content-Type": {contentType}}
	}
	body := func(attempt int) (*sizedReader, error) {
		if attempt > 1 {
			if _, err := rs.Seek(start, io.SeekStart); err != nil {
				return nil, fmt.Errorf("rewinding the reader for attempt %d: %w", attempt, err)
			}
		}
		return newSizedReader(ctx, r, size), nil
	}
	err := b.write(ctx, http.MethodPut, key, attempts, body, size, hdr)
	if err != nil && !replayable && isRetryable(err) {
		err = fmt.Errorf("%w (not retried: the reader cannot be rewound)", err)
	}
	if err != nil {
		return b.errorf("put", key, err)
	}
	return nil
}

// Delete sends DELETE; 404 and 410 count as success.
func (b *httpBackend) Delete(ctx context.Context, key string) error {
	err := b.write(ctx, http.MethodDelete, key, b.opts.MaxAttempts, nil, 0, nil)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return b.errorf("delete", key, err)
	}
	return nil
}

// writeStatusError classifies a non-2xx answer to a PUT or DELETE. Unlike
// a read, 403 is a refusal of the credentials, not a missing object.
func writeStatusError(method string, resp *http.Response) error {
	st := fmt.Sprintf("HTTP %s", resp.Status)
	switch c := resp.StatusCode; {
	case c == 401 || c == 403 || c == 407:
		return fmt.Errorf("%w (%s)", ErrAuth, st)
	case c == 405 || c == 501:
		return fmt.Errorf("%w: the server does not accept %s (%s)", ErrUnsupported, method, st)
	case method == http.MethodDelete && (c == 404 || c == 410):
		return fmt.Errorf("%w (%s)", ErrNotFound, st)
	case c >= 500 || c == 429 || c == 408:
		return &retryableErr{errors.New(st)}
	}
	return errors.New(st)
}

// write performs a PUT (body non-nil, giving the body of each attempt) or
// a DELETE, making at most attempts attempts, and succeeds on 2xx.
func (b *httpBackend) write(ctx context.Context, method, key string, attempts int, body func(attempt int) (*sizedReader, error), size int64, hdr http.Header) error {
	u, err := b.resolve(key)
	if err != nil {
		return err
	}
	for attempt := 1; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, method, u.String(), nil)
		if err != nil {
			return err
		}
		var sr *sizedReader
		if body != nil {
			if sr, err = body(attempt); err != nil {
				return err
			}
			if size == 0 {
				// net/http takes a body with ContentLength 0 for
				// one of unknown length; check the reader is empty.
				if _, err := sr.Read(make([]byte, 1)); err != io.EOF {
					return err
				}
				req.Body = http.NoBody
			} else {
				req.Body = io.NopCloser(sr)
			}
			req.ContentLength = size
		}
		for k, v := range hdr {
			req.Header[k] = v
		}
		b.auth(req)
		resp, err := b.client.Do(req)
		if sr != nil {
			// The transport may still hold the body (an early answer);
			// no Read of it may race with a rewind.
			sr.detach()
			if ferr := sr.failed(); ferr != nil {
				if resp != nil {
					drain(resp.Body)
				}
				return ferr
			}
		}
		var wait time.Duration
		if err == nil {
			if resp.StatusCode/100 == 2 {
				drain(resp.Body)
				if sr != nil && !sr.complete() {
					return fmt.Errorf("server answered %s before the whole body was sent", resp.Status)
				}
				return nil
			}
			err = writeStatusError(method, resp)
			wait = retryAfter(resp.Header, time.Now())
			drain(resp.Body)
		} else {
			if cerr := ctx.Err(); cerr != nil {
				if errors.Is(cerr, context.DeadlineExceeded) {
					return atDeadline(fmt.Errorf("attempt %d: %w", attempt, err))
				}
				return context.Cause(ctx)
			}
			err = transportError(err)
		}
		if !isRetryable(err) {
			return err
		}
		if attempt >= attempts {
			if attempts == 1 {
				return err
			}
			return fmt.Errorf("giving up after %d attempts: %w", attempt, err)
		}
		if d := backoff(b.opts.RetryBaseDelay, b.opts.RetryMaxDelay, attempt); wait < d {
			wait = d
		}
		wait = min(wait, b.opts.RetryMaxDelay)
		b.log.Debug("retrying request", "cache", b.name, "method", method, "key", keyName(key), "attempt", attempt, "wait", wait, "err", err)
		if err := sleepBeforeRetry(ctx, wait, fmt.Errorf("attempt %d: %w", attempt, err)); err != nil {
			return err
		}
	}
}
