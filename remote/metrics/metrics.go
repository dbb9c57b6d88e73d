// Package metrics exports one mount's counters as Prometheus metrics on
// a private registry: FUSE operations and their latency (as package fs
// reports them), narinfo lookups by outcome, upstream requests, bytes,
// errors and latency by cache and kind, NAR fetches and verification
// failures, the local cache's size, hits and evictions, the bytes served
// to readers and the amplification (upstream bytes ÷ bytes served).
//
// # Labels
//
// Label values are bounded and public: operation names, errno names,
// outcome and kind names, and the store URL as remote redacts it (no
// credentials). Store paths, hashes and file names never become labels:
// they would leak what a machine runs and grow the series without bound.
//
// # Bytes served
//
// Served counts the bytes READ requests returned. Reads the kernel
// answers itself never reach narfs: the page cache (FOPEN_KEEP_CACHE)
// and, with FUSE passthrough, every read of a file of 1 MiB or more.
// With passthrough on, amplification is therefore an upper bound.
package metrics

import (
	"net/http"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/narfs/narfs/remote"
	"github.com/narfs/narfs/remote/stats"
)

// Metrics is one mount's registry. It implements fs.Metrics; give
// ObserveRequest to remote.Config.OnRequest and the opened store to
// Watch.
type Metrics struct {
	// read-only after New
	reg     *prometheus.Registry
	started time.Time
	ops     *prometheus.CounterVec
	opTime  *prometheus.HistogramVec
	reqTime *prometheus.HistogramVec

	served atomic.Int64
	store  atomic.Pointer[remote.Core] // set by Watch
}

// New makes the registry for a mount. Upstream series carry the cache's
// redacted URL as label "cache", one per substituter.
func New() *Metrics {
	m := &Metrics{
		reg:     prometheus.NewRegistry(),
		started: time.Now(),
		ops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "narfs_fuse_operations_total",
			Help: "FUSE operations answered by narfs, by operation and result (ok or the errno).",
		}, []string{"op", "result"}),
		opTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "narfs_fuse_operation_duration_seconds",
			Help:    "Time narfs took to answer a FUSE operation.",
			Buckets: prometheus.ExponentialBuckets(0.00005, 4, 10), // 50µs … 13s
		}, []string{"op"}),
		reqTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "narfs_upstream_request_duration_seconds",
			Help:    "Time to the response of an upstream request (headers, not the whole body).",
			Buckets: prometheus.ExponentialBuckets(0.001, 3, 10), // 1ms … 20s
		}, []string{"cache", "kind"}),
	}
	m.reg.MustRegister(m.ops, m.opTime, m.reqTime, collector{m})
	return m
}

// Watch makes the registry read store's counters at every scrape.
func (m *Metrics) Watch(store *remote.Core) { m.store.Store(store) }

// Op counts a FUSE operation.
func (m *Metrics) Op(op string, d time.Duration, errno syscall.Errno) {
	result := "ok"
	if errno != 0 {
		result = errnoName(errno)
	}
	m.ops.WithLabelValues(op, result).Inc()
	m.opTime.WithLabelValues(op).Observe(d.Seconds())
}

// Served counts bytes returned to a reader.
func (m *Metrics) Served(n int64) { m.served.Add(n) }

// ObserveRequest records an upstream request's latency.
func (m *Metrics) ObserveRequest(cache string, kind stats.Kind, d time.Duration, _ error) {
	m.reqTime.WithLabelValues(cache, kind.String()).Observe(d.Seconds())
}

// Handler serves the registry in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Amplification is upstream bytes per byte served; 0 while nothing was
// served (nothing to relate the traffic to, and no division by zero).
func Amplification(upstream, served int64) float64 {
	if served <= 0 {
		return 0
	}
	return float64(upstream) / float64(served)
}

// errnoName is a bounded label value for an errno.
func errnoName(e syscall.Errno) string {
	switch e {
	case syscall.ENOENT:
		return "ENOENT"
	case syscall.EIO:
		return "EIO"
	case syscall.EINTR:
		return "EINTR"
	case syscall.ENOTDIR:
		return "ENOTDIR"
	case syscall.EROFS:
		return "EROFS"
	case syscall.EISDIR:
		return "EISDIR"
	}
	return "other"
}
