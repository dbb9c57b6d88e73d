package backend

import (
	"context"
	"errors"
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
	d := time.Duration(float64(base) * math.Pow(2, exp))
	if d > max || d <= 0 {
		d = max
	}
	return d
}

// retryAfter parses a Retry-After header (seconds or HTTP date); 0 if
// absent or unparsable.
func retryAfter(h http.Header, now time.Time) time.Duration {
	v := h.Get("Retry-After")
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return t.Sub(now)
	}
	return 0
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
