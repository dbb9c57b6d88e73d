// Package workq runs background jobs (lookahead, prefetch) on a bounded
// number of goroutines, each key at most once while the queue remembers
// it (a bounded number of recent keys).
package workq

import (
	"context"
	"log/slog"
	"sync"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/narfs/narfs/remote/internal/flight"
	"github.com/narfs/narfs/remote/internal/tune"
)

// Queue runs background jobs, first queued first run, on at most jobs
// goroutines, each key at most once (of the last keys it remembers, at
// most the bound it was made with). Work still
// queued when ctx ends (the Store closes) is dropped; Wait returns once the
// running jobs have returned. Queuing never blocks: a walk of a closure
// queues its whole breadth at once.
type Queue struct {
	// read-only after New
	ctx  context.Context
	jobs int
	log  *slog.Logger
	name string

	seen *lru.Cache[string, struct{}] // keys queued, running or done

	mu      sync.Mutex // protects the fields below
	pending []job
	running int  // worker goroutines
	closed  bool // set by Wait: no new workers
	wg      sync.WaitGroup
}

type job struct {
	key string
	fn  func(context.Context)
}

// New makes a queue remembering at most seen keys (≤ 0: tune.QueueSeenMax).
func New(ctx context.Context, jobs, seen int, log *slog.Logger, name string) *Queue {
	if seen <= 0 {
		seen = tune.QueueSeenMax
	}
	seenKeys, _ := lru.New[string, struct{}](seen) // only fails for a size ≤ 0
	return &Queue{ctx: ctx, jobs: max(jobs, 1), log: log, name: name, seen: seenKeys}
}

// Add queues fn under key unless the key was queued before; it reports
// whether it did.
func (q *Queue) Add(key string, fn func(context.Context)) bool {
	if q.ctx.Err() != nil {
		return false
	}
	if found, _ := q.seen.ContainsOrAdd(key, struct{}{}); found {
		return false
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return false
	}
	q.pending = append(q.pending, job{key, fn})
	if q.running < q.jobs {
		q.running++
		q.wg.Add(1)
		go q.work()
	}
	return true
}

// Forget lets key be queued again (its job was skipped, not done).
func (q *Queue) Forget(key string) { q.seen.Remove(key) }

// Remembered is how many keys the queue remembers now.
func (q *Queue) Remembered() int { return q.seen.Len() }

func (q *Queue) work() {
	defer q.wg.Done()
	for {
		q.mu.Lock()
		if q.ctx.Err() != nil {
			q.pending = nil
		}
		if len(q.pending) == 0 {
			q.running--
			q.mu.Unlock()
			return
		}
		j := q.pending[0]
		q.pending[0] = job{}
		q.pending = q.pending[1:]
		q.mu.Unlock()
		func() {
			var err error
			defer func() {
				if err != nil {
					q.log.Debug("background job failed", "queue", q.name, "key", j.key, "err", err)
				}
			}()
			defer flight.RecoverBug(q.log, q.name+" "+j.key, &err)
			j.fn(q.ctx)
		}()
	}
}

// Wait drops what is queued and returns when no job runs; call it after
// ctx ended.
func (q *Queue) Wait() {
	q.mu.Lock()
	q.closed = true
	q.pending = nil
	q.mu.Unlock()
	q.wg.Wait()
}

// Idle reports whether nothing is queued or running (for tests).
func (q *Queue) Idle() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.running == 0
}
