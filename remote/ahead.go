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
		lookq:           workq.New(bg, tune.LookaheadJobs, log, "lookahead"),
		prefetchq:       workq.New(bg, cfg.PrefetchJobs, log, "prefetch"),
		lookaheadPaused: memo.New(tune.LookaheadPauseMin),
	}
}
