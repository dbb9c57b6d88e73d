package remote

import (
	"context"
	"log/slog"

	"github.com/narfs/narfs/remote/internal/memo"
	"github.com/narfs/narfs/remote/internal/tune"
	"github.com/narfs/narfs/remote/internal/workq"
)

// aheadPart is a Store's background work, stopped by Close: lookq looks
// up references' narinfos and listings ahead of readers, prefetchq
// fetches their data (Config.PrefetchReferences).
type aheadPart struct {
	lookq           *workq.Queue
	prefetchq       *workq.Queue
	lookaheadPaused *memo.Memo // "" → why lookahead pauses
}

// newAheadPart's queues stop when bg ends.
func newAheadPart(bg context.Context, cfg Config, log *slog.Logger) *aheadPart {
	return &aheadPart{
		// The lookahead's product is a narinfo in the narinfo LRU: it
		// remembers no more references than that LRU holds narinfos, so
		// that metadata queries of ever more paths (a daemon socket's
		// clients) cost no memory beyond the LRU's bound. Prefetches fetch
		// data: their queue remembers more, so a path's data is tried once.
		lookq:           workq.New(bg, tune.LookaheadJobs, cfg.NarinfoCacheSize, log, "lookahead"),
		prefetchq:       workq.New(bg, cfg.PrefetchJobs, 0, log, "prefetch"),
		lookaheadPaused: memo.New(tune.LookaheadPauseMin),
	}
}
