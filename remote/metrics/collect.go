package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/narfs/narfs/remote/stats"
)

// collector reads the store's counters at scrape time, so remote keeps
// plain atomics and knows nothing of Prometheus.
type collector struct{ m *Metrics }

var (
	descStart     = prometheus.NewDesc("narfs_start_time_seconds", "When the mount started, in Unix seconds.", nil, nil)
	descUptime    = prometheus.NewDesc("narfs_uptime_seconds", "Seconds since the mount started.", nil, nil)
	descLookups   = prometheus.NewDesc("narfs_narinfo_lookups_total", "Narinfo lookups by outcome: hit, miss, negative (answered by the negative cache), untrusted, error.", []string{"outcome"}, nil)
	descRequests  = prometheus.NewDesc("narfs_upstream_requests_total", "Requests to the binary cache by kind of object.", []string{"cache", "kind"}, nil)
	descReqErrors = prometheus.NewDesc("narfs_upstream_errors_total", "Failed upstream requests and bodies cut short (not-found is not an error).", []string{"cache", "kind"}, nil)
	descBytes     = prometheus.NewDesc("narfs_upstream_bytes_total", "Body bytes received from the binary cache by kind of object.", []string{"cache", "kind"}, nil)
	descFetches   = prometheus.NewDesc("narfs_nar_fetches_total", "NARs fetched, verified and extracted.", nil, nil)
	descCorrupt   = prometheus.NewDesc("narfs_nar_verification_failures_total", "NARs (or chunks) that failed verification.", nil, nil)
	descUsage     = prometheus.NewDesc("narfs_cache_usage_bytes", "Bytes of extracted NARs in the local cache.", nil, nil)
	descEvictions = prometheus.NewDesc("narfs_cache_evictions_total", "Local cache entries evicted to make room.", nil, nil)
	descHits      = prometheus.NewDesc("narfs_cache_hits_total", "Local cache lookups of an extracted NAR that found it.", nil, nil)
	descMisses    = prometheus.NewDesc("narfs_cache_misses_total", "Local cache lookups of an extracted NAR that did not find it.", nil, nil)
	descHitRatio  = prometheus.NewDesc("narfs_cache_hit_ratio", "Hits ÷ (hits + misses) of the local cache; 0 before any lookup.", nil, nil)
	descServed    = prometheus.NewDesc("narfs_served_bytes_total", "Bytes returned to readers by READ requests (not reads the kernel serves itself: page cache, passthrough).", nil, nil)
	descAmp       = prometheus.NewDesc("narfs_amplification_ratio", "Upstream bytes ÷ bytes served; 0 while nothing was served.", nil, nil)
)

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descStart, descUptime, descLookups, descRequests, descReqErrors, descBytes, descFetches, descCorrupt, descUsage, descEvictions, descHits, descMisses, descHitRatio, descServed, descAmp} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	m := c.m
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(descStart, float64(m.started.UnixNano())/1e9)
	gauge(descUptime, time.Since(m.started).Seconds())
	served := m.served.Load()
	counter(descServed, served)
	store := m.store.Load()
	if store == nil {
		return
	}
	s := store.Stats()
	for o := stats.Outcome(0); o < stats.NumOutcomes; o++ {
		counter(descLookups, s.Lookups[o], o.String())
	}
	for _, c := range s.Caches {
		for k := stats.Kind(0); k < stats.NumKinds; k++ {
			u := c.Upstream[k]
			counter(descRequests, u.Requests, c.URL, k.String())
			counter(descReqErrors, u.Errors, c.URL, k.String())
			counter(descBytes, u.Bytes, c.URL, k.String())
		}
	}
	counter(descFetches, s.Fetches)
	counter(descCorrupt, s.Corrupt)
	gauge(descUsage, float64(s.CacheBytes))
	counter(descEvictions, s.Evictions)
	counter(descHits, s.CacheHits)
	counter(descMisses, s.CacheMisses)
	gauge(descHitRatio, ratio(s.CacheHits, s.CacheHits+s.CacheMisses))
	gauge(descAmp, Amplification(s.UpstreamBytes, served))
}

func ratio(a, b int64) float64 {
	if b <= 0 {
		return 0
	}
	return float64(a) / float64(b)
}
