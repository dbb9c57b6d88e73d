package linkshape

import (
	"context"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// burst is the most a bucket holds: what a body may send at once at its
	// start or after its reader paused, and how much of a late wake-up
	// the bucket makes up.
	burst = 128 << 10
	// chunk is the most a paced body hands on per Read: the step in which
	// bodies sharing a Total bucket take turns.
	chunk = 64 << 10
	// minSleep is the shortest wait a body sleeps; shorter debts are left
	// to grow. Go's timers overshoot short waits by up to a millisecond on
	// a busy machine (epoll's granularity), which at 90 MB/s is more than
	// burst can make up; a wait of 2 ms overshoots by a few hundred µs,
	// which the bucket absorbs, so the long-run rate stays exact.
	minSleep = 2 * time.Millisecond
)

// bucket is a token bucket of rate bytes per second holding at most burst
// tokens. reserve takes tokens at once, going into debt if need be, and
// says how long the caller must wait for the debt to be paid: waits queue
// in reservation order, and a late wake-up is not compounded. Safe for
// concurrent use; a nil *bucket is unlimited.
type bucket struct {
	mu     sync.Mutex
	rate   float64 // bytes per second
	tokens float64
	last   time.Time
}

func newBucket(rate int64) *bucket {
	if rate <= 0 {
		return nil
	}
	return &bucket{rate: float64(rate), tokens: burst, last: time.Now()}
}

func (b *bucket) reserve(now time.Time, n int) time.Duration {
	if b == nil {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if dt := now.Sub(b.last); dt > 0 {
		b.tokens += dt.Seconds() * b.rate
		b.last = now
	}
	if b.tokens > burst {
		b.tokens = burst
	}
	b.tokens -= float64(n)
	if b.tokens >= 0 {
		return 0
	}
	return time.Duration(-b.tokens / b.rate * float64(time.Second))
}

// sleep waits d, or until ctx is done or stop is closed.
func sleep(ctx context.Context, stop <-chan struct{}, d time.Duration) error {
	if d <= 0 {
		select {
		case <-stop:
			return errClosed
		default:
			return ctx.Err()
		}
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-stop:
		return errClosed
	}
}

// pacedBody hands on rc's bytes no faster than its own bucket and the
// shared one allow, counting them into *count.
type pacedBody struct {
	rc     io.ReadCloser
	ctx    context.Context
	stop   <-chan struct{}
	own    *bucket
	shared *bucket
	count  *atomic.Int64
}

func (b *pacedBody) Read(p []byte) (int, error) {
	if len(p) > chunk {
		p = p[:chunk]
	}
	n, err := b.rc.Read(p)
	if n > 0 {
		now := time.Now()
		d := max(b.own.reserve(now, n), b.shared.reserve(now, n))
		if d < minSleep {
			d = 0
		}
		if werr := sleep(b.ctx, b.stop, d); werr != nil {
			// The exchange is being torn down: hand on nothing more.
			return 0, werr
		}
		b.count.Add(int64(n))
	}
	return n, err
}

func (b *pacedBody) Close() error { return b.rc.Close() }
