package linkshape

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Profile is the shape of a link: how long each request waits for its
// first byte, and how fast each body then streams.
type Profile struct {
	Name string
	// TTFB is added to every response between the upstream's response
	// headers and the forwarding of those headers to the client.
	TTFB time.Duration
	// Rate is the bandwidth of each request's body and each response's
	// body, in bytes per second, in each direction independently; 0 means
	// unlimited. N parallel requests get N×Rate.
	Rate int64
	// Total, if not 0, caps all response bodies together at Total bytes
	// per second, and all request bodies together at Total bytes per
	// second (the two directions are separate, as on a full-duplex link).
	// 0 means no shared cap: only Rate limits.
	Total int64
}

// Predefined profiles. Their figures are typical, not measured guarantees:
// S3Region is a client in the same region as its bucket (a GET's first
// byte after ~20 ms, then ~90 MB/s per connection), WAN a client on
// another continent or behind a modest line.
var (
	Loopback = Profile{Name: "loopback"}
	S3Region = Profile{Name: "s3-region", TTFB: 20 * time.Millisecond, Rate: 90e6}
	WAN      = Profile{Name: "wan", TTFB: 60 * time.Millisecond, Rate: 25e6}
)

// Profiles lists the predefined profiles, in the order Loopback, S3Region,
// WAN.
func Profiles() []Profile { return []Profile{Loopback, S3Region, WAN} }

// String gives the name and the figures, e.g.
// "s3-region(ttfb=20ms,rate=90MB/s)".
func (p Profile) String() string {
	var b strings.Builder
	b.WriteString(p.Name)
	fmt.Fprintf(&b, "(ttfb=%v,rate=%s", p.TTFB, formatRate(p.Rate))
	if p.Total != 0 {
		fmt.Fprintf(&b, ",total=%s", formatRate(p.Total))
	}
	b.WriteString(")")
	return b.String()
}

func formatRate(r int64) string {
	switch {
	case r == 0:
		return "unlimited"
	case r%1e9 == 0:
		return fmt.Sprintf("%dGB/s", r/1e9)
	case r%1e6 == 0:
		return fmt.Sprintf("%dMB/s", r/1e6)
	case r%1e3 == 0:
		return fmt.Sprintf("%dKB/s", r/1e3)
	}
	return fmt.Sprintf("%dB/s", r)
}

// ParseProfile reads a profile name ("loopback", "s3-region", "wan") or a
// custom profile "ttfb=20ms,rate=90MB" (keys ttfb, rate and total, in any
// order, each optional). A custom list may start with a predefined name
// whose figures it then overrides: "s3-region,total=200MB".
//
// Durations are Go durations (20ms, 1.5s). Rates are bytes per second with
// an optional unit B, KB, MB, GB (decimal) or KiB, MiB, GiB (binary) and
// an optional "/s": 90MB, 90MB/s, 1.5GB, 64KiB/s, 1000. A rate of 0 is
// unlimited. A bare K, M or G is refused as ambiguous, and so are bits.
func ParseProfile(s string) (Profile, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Profile{}, errors.New("linkshape: empty profile")
	}
	var p Profile
	items := strings.Split(s, ",")
	if named, ok := lookup(strings.TrimSpace(items[0])); ok {
		p = named
		items = items[1:]
		if len(items) == 0 {
			return p, nil
		}
	}
	p.Name = s
	for _, it := range items {
		k, v, ok := strings.Cut(strings.TrimSpace(it), "=")
		if !ok {
			return Profile{}, fmt.Errorf("linkshape: profile %q: %q is neither a profile name (loopback, s3-region, wan) nor key=value", s, it)
		}
		k, v = strings.ToLower(strings.TrimSpace(k)), strings.TrimSpace(v)
		switch k {
		case "ttfb":
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 {
				return Profile{}, fmt.Errorf("linkshape: profile %q: ttfb %q: want a duration ≥ 0 like 20ms", s, v)
			}
			p.TTFB = d
		case "rate", "total":
			r, err := parseRate(v)
			if err != nil {
				return Profile{}, fmt.Errorf("linkshape: profile %q: %s %q: %v", s, k, v, err)
			}
			if k == "rate" {
				p.Rate = r
			} else {
				p.Total = r
			}
		default:
			return Profile{}, fmt.Errorf("linkshape: profile %q: unknown key %q (want ttfb, rate, total)", s, k)
		}
	}
	return p, nil
}

func lookup(name string) (Profile, bool) {
	for _, p := range Profiles() {
		if strings.EqualFold(name, p.Name) {
			return p, true
		}
	}
	return Profile{}, false
}

var rateUnits = []struct {
	suffix string
	mul    float64
}{
	// Longest first, so "MiB" is not taken for "B".
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30},
	{"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9},
	{"b", 1},
}

func parseRate(v string) (int64, error) {
	s := strings.ToLower(strings.TrimSpace(v))
	s = strings.TrimSuffix(s, "/s")
	mul := 1.0
	for _, u := range rateUnits {
		if strings.HasSuffix(s, u.suffix) {
			s, mul = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mul
			break
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, errors.New("want bytes per second like 90MB, 64KiB/s or 0 for unlimited")
	}
	r := f * mul
	if r >= math.MaxInt64 {
		return 0, errors.New("rate too large")
	}
	if r > 0 && r < 1 {
		return 0, errors.New("rate below 1 byte per second")
	}
	return int64(r), nil
}
