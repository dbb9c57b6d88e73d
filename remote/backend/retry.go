package backend

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"
)

// backoff is the wait before attempt+1 after attempt (1-based) failed:
// base * 2^(attempt-1+U[0,0.5)), Nix's formula, capped at max. The jitter
// keeps parallel readers that failed together from retrying in lockstep.
func backoff(base, max time.Duration, attempt int) time.Duration {
	exp := float64(attempt-1) + rand.Float64()*0.5
	// Compare as floats: converting an out-of-range float (many attempts)
	// to an integer is implementation-defined.
	f := float64(base) * math.Pow(2, exp)
	if !(f > 0 && f < float64(max)) {
		return max
	}
	return time.Duration(f)
}

// retryAfter parses a Retry-After header (seconds or HTTP date); 0 if
// absent or unparsable.
func retryAfter(h http.Header, now time.Time) time.Duration {
	v := h.Get("Retry-After")
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil && s >= 0 {
		// A hostile value must not wrap around to a short wait.
		if s > int64(math.MaxInt64/time.Second) {
			return math.MaxInt64
		}
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return t.Sub(now)
	}
	return 0
}

// deadlineError reports that the operation's deadline (the caller's
// context) stopped it. It wraps both context.DeadlineExceeded and the cause
// of the last failed attempt, so logs say why the time ran out.
type deadlineError struct{ err error }

func (e *deadlineError) Error() string   { return "deadline exceeded: " + e.err.Error() }
func (e *deadlineError) Unwrap() []error { return []error{e.err, context.DeadlineExceeded} }

// atDeadline wraps last as a deadlineError unless it already is one.
func atDeadline(last error) error {
	if errors.Is(last, context.DeadlineExceeded) {
		return last
	}
	return &deadlineError{last}
}

// sleepBeforeRetry waits d before another attempt after last failed. A
// wait that would not end before ctx's deadline is not started: the next
// attempt could not happen anyway, and the caller learns why at once
// instead of after a pointless sleep.
func sleepBeforeRetry(ctx context.Context, d time.Duration, last error) error {
	if err := ctx.Err(); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return atDeadline(last)
		}
		return context.Cause(ctx)
	}
	if dl, ok := ctx.Deadline(); ok {
		if left := time.Until(dl); left <= d {
			return atDeadline(fmt.Errorf("not retrying: a wait of %v does not fit in the %v left: %w",
				d.Round(time.Millisecond), max(left, 0).Round(time.Millisecond), last))
		}
	}
	if err := sleepCtx(ctx, d); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return atDeadline(last)
		}
		return err
	}
	return nil
}

// sleepCtx waits d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// retryableErr marks an error worth another attempt.
type retryableErr struct{ err error }

func (e *retryableErr) Error() string { return e.err.Error() }
func (e *retryableErr) Unwrap() error { return e.err }

func isRetryable(err error) bool {
	var r *retryableErr
	return errors.As(err, &r)
}
