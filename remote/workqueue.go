package remote

import (
	"context"
	"log/slog"
	"sync"

	lru "github.com/hashicorp/golang-lru/v2"
)

// workQueue runs background jobs, first queued first run, on at most jobs
// goroutines, each key at most once (of the last keys it remembers, at
// most the bound it was made with). Work still
// queued when ctx ends (the Store closes) is dropped; wait returns once the
// running jobs have returned. Queuing never blocks: a walk of a closure
// queues its whole breadth at once.
type workQueue struct {
	// read-only after newWorkQueue
	ctx  context.Context
	jobs int
	log  *slog.Logger
	name string

	seen *lru.Cache[string, struct{}] // keys queued, running or done

	mu      sync.Mutex // protects the fields below
	pending []queuedJob
	running int  // worker goroutines
	closed  bool // set by wait: no new workers
	wg      sync.WaitGroup
}

type queuedJob struct {
	key string
	fn  func(context.Context)
}

// seenMax bounds the keys a queue remembers: ~200 bytes each (the key,
// its LRU entry and map slot).
const seenMax = 1 << 18

// newWorkQueue makes a queue remembering at most seen keys (≤ 0: seenMax).
func newWorkQueue(ctx context.Context, jobs, seen int, log *slog.Logger, name string) *workQueue {
	if seen <= 0 {
		seen = seenMax
	}
	seenKeys, _ := lru.New[string, struct{}](seen) // only fails for a size ≤ 0
	return &workQueue{ctx: ctx, jobs: max(jobs, 1), log: log, name: name, seen: seenKeys}
}

// add queues fn under key unless the key was queued before; it reports
// whether it did.
func (q *workQueue) add(key string, fn func(context.Context)) bool {
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
	q.pending = append(q.pending, queuedJob{key, fn})
	if q.running < q.jobs {
		q.running++
		q.wg.Add(1)
		go q.work()
	}
	return true
}

// forget lets key be queued again (its job was skipped, not done).
func (q *workQueue) forget(key string) { q.seen.Remove(key) }

func (q *workQueue) work() {
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
		q.pending[0] = queuedJob{}
		q.pending = q.pending[1:]
		q.mu.Unlock()
		func() {
			var err error
			defer func() {
				if err != nil {
					q.log.Debug("background job failed", "queue", q.name, "key", j.key, "err", err)
				}
			}()
			defer recoverBug(q.log, q.name+" "+j.key, &err)
			j.fn(q.ctx)
		}()
	}
}

// wait drops what is queued and returns when no job runs; call it after
// ctx ended.
func (q *workQueue) wait() {
	q.mu.Lock()
	q.closed = true
	q.pending = nil
	q.mu.Unlock()
	q.wg.Wait()
}

// idle reports whether nothing is queued or running (for tests).
func (q *workQueue) idle() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.running == 0
}
