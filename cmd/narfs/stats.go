package main

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/spf13/cobra"
)

func statsCmd() *cobra.Command {
	var url string
	c := &cobra.Command{
		Use:   "stats [flags]",
		Short: "Summarize a running mount's metrics (mount --metrics-listen)",
		Example: `  narfs mount --metrics-listen 127.0.0.1:9150 https://cache.nixos.org /mnt/store &
  narfs stats --metrics-url http://127.0.0.1:9150`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fams, err := scrape(url)
			if err != nil {
				return err
			}
			printStats(cmd.OutOrStdout(), fams)
			return nil
		},
	}
	c.Flags().StringVar(&url, "metrics-url", "http://127.0.0.1:9150", "the mount's --metrics-listen address")
	return c
}

func scrape(url string) (map[string]*dto.MetricFamily, error) {
	cl := &http.Client{Timeout: 10 * time.Second}
	resp, err := cl.Get(strings.TrimSuffix(url, "/") + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s/metrics: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s/metrics: %w", url, err)
	}
	return fams, nil
}

// metricSum adds the samples of a family whose labels include every
// name=value pair of match.
func metricSum(fams map[string]*dto.MetricFamily, name string, match ...string) float64 {
	f := fams[name]
	if f == nil {
		return 0
	}
	var sum float64
next:
	for _, m := range f.GetMetric() {
		for i := 0; i+1 < len(match); i += 2 {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == match[i] && l.GetValue() == match[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Untyped != nil:
			sum += m.Untyped.GetValue()
		}
	}
	return sum
}

// labelValues is the distinct values of label in a family, sorted.
func labelValues(fams map[string]*dto.MetricFamily, name, label string) []string {
	var vals []string
	if f := fams[name]; f != nil {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && !slices.Contains(vals, l.GetValue()) {
					vals = append(vals, l.GetValue())
				}
			}
		}
	}
	slices.Sort(vals)
	return vals
}

func printStats(w io.Writer, fams map[string]*dto.MetricFamily) {
	v := func(name string, match ...string) float64 { return metricSum(fams, name, match...) }
	n := func(name string, match ...string) uint64 { return uint64(v(name, match...)) }
	fmt.Fprintf(w, "uptime:                %s\n", (time.Duration(v("narfs_uptime_seconds")) * time.Second).String())
	fmt.Fprintf(w, "narinfo lookups:       hit %d, miss %d, negative %d, untrusted %d, error %d\n",
		n("narfs_narinfo_lookups_total", "outcome", "hit"), n("narfs_narinfo_lookups_total", "outcome", "miss"),
		n("narfs_narinfo_lookups_total", "outcome", "negative"), n("narfs_narinfo_lookups_total", "outcome", "untrusted"),
		n("narfs_narinfo_lookups_total", "outcome", "error"))
	fmt.Fprintf(w, "upstream requests:     %d (", n("narfs_upstream_requests_total"))
	for i, k := range []string{"narinfo", "listing", "index", "nar", "other"} {
		if i > 0 {
			fmt.Fprint(w, ", ")
		}
		fmt.Fprintf(w, "%s %d", k, n("narfs_upstream_requests_total", "kind", k))
	}
	fmt.Fprintf(w, "), errors %d\n", n("narfs_upstream_errors_total"))
	if caches := labelValues(fams, "narfs_upstream_requests_total", "cache"); len(caches) > 1 {
		for _, c := range caches {
			fmt.Fprintf(w, "  %s: %d requests, %d errors, %s\n", c, n("narfs_upstream_requests_total", "cache", c),
				n("narfs_upstream_errors_total", "cache", c), humanize.IBytes(n("narfs_upstream_bytes_total", "cache", c)))
		}
	}
	up, served := n("narfs_upstream_bytes_total"), n("narfs_served_bytes_total")
	fmt.Fprintf(w, "upstream bytes:        %s (%d)\n", humanize.IBytes(up), up)
	fmt.Fprintf(w, "bytes served:          %s (%d; reads the kernel serves itself are not counted)\n", humanize.IBytes(served), served)
	fmt.Fprintf(w, "amplification:         %.3f\n", v("narfs_amplification_ratio"))
	usage := n("narfs_cache_usage_bytes")
	fmt.Fprintf(w, "local cache:           %s, hit ratio %.3f, evictions %d\n", humanize.IBytes(usage), v("narfs_cache_hit_ratio"), n("narfs_cache_evictions_total"))
	fmt.Fprintf(w, "NAR fetches:           %d\n", n("narfs_nar_fetches_total"))
	fmt.Fprintf(w, "verification failures: %d\n", n("narfs_nar_verification_failures_total"))
}
