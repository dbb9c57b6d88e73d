package integration

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/narfs/narfs/integration/linkshape"
)

// benchLink is one way to a benchmark server: the server itself
// (loopback) or a linkshape proxy in front of it. narfs and Nix are given
// the same URL, so both pay the same link.
type benchLink struct {
	name string
	url  string
}

func (l benchLink) shaped() bool { return l.name != linkshape.Loopback.Name }

// benchProfiles are the links cold figures are reported on: loopback,
// s3-region and wan, or those NARFS_BENCH_LINKS names (comma-separated).
func benchProfiles(t testing.TB) []linkshape.Profile {
	all := linkshape.Profiles()
	v := os.Getenv("NARFS_BENCH_LINKS")
	if v == "" {
		return all
	}
	var ps []linkshape.Profile
	for _, name := range strings.Split(v, ",") {
		i := slices.IndexFunc(all, func(p linkshape.Profile) bool { return p.Name == strings.TrimSpace(name) })
		if i < 0 {
			t.Fatalf("NARFS_BENCH_LINKS: no profile %q (have loopback, s3-region, wan)", name)
		}
		ps = append(ps, all[i])
	}
	return ps
}

// linksTo gives one benchLink per profile to the server at url, starting
// a shaping proxy (stopped with the test) for each shaped profile.
func linksTo(t testing.TB, url string, profiles []linkshape.Profile) []benchLink {
	t.Helper()
	var ls []benchLink
	for _, p := range profiles {
		if p == linkshape.Loopback {
			ls = append(ls, benchLink{p.Name, url})
			continue
		}
		px, err := linkshape.Start(url, p)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { px.Close() })
		ls = append(ls, benchLink{p.Name, px.URL()})
	}
	return ls
}
