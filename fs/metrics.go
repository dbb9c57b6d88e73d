package fs

import (
	"syscall"
	"time"
)

// Metrics is told what the mount does, for monitoring; the fs package
// only reports, an implementation outside it counts (Options.Metrics,
// nil for none). Implementations must be safe for concurrent use and
// quick: they run inside every request.
type Metrics interface {
	// Op is one FUSE operation by its lower-case name (lookup, getattr,
	// open, read, readdir, opendir, readlink, release, statfs), how long
	// narfs took to answer and the errno it answered (0: success).
	Op(op string, d time.Duration, errno syscall.Errno)
	// Served is the bytes one READ returned to a reader. Reads the
	// kernel serves itself (FUSE passthrough, the page cache) never
	// reach narfs and are not counted.
	Served(n int64)
}

type noMetrics struct{}

func (noMetrics) Op(string, time.Duration, syscall.Errno) {}
func (noMetrics) Served(int64)                            {}

// observe reports an operation begun at t0; deferred at the top of a
// method with a pointer to its named errno result.
func observe(m Metrics, op string, t0 time.Time, errno *syscall.Errno) {
	m.Op(op, time.Since(t0), *errno)
}
