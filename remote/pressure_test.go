package remote

import (
	"context"
	"io"
	"path/filepath"
	"sync/atomic"
	"testing"
)

// Many readers over a cache that holds about two entries: evictions and
// re-fetches race with opens all the time, and no open of an existing
// file ever fails.
func TestOpenUnderEvictionPressure(t *testing.T) {
	type file struct {
		p    *PathInfo
		sub  string
		want string
	}
	cfg := trustedConfig(t)
	dir := filepath.Join(fixtureDir, "cache-zstd")
	probe := openStore(t, dir, "", cfg)
	var files []file
	var biggest int64
	for _, fp := range fixturePaths(t) {
		p := mustResolve(t, probe, fp.base)
		nd := narBytes(t, fp.base)
		sub, n := firstFile(buildListing(t, nd))
		if n == nil {
			continue
		}
		files = append(files, file{p, sub, string(nd[n.NarOffset : n.NarOffset+n.Size])})
		biggest = max(biggest, p.NarInfo.NarSize)
	}
	cfg.CacheDir = t.TempDir()
	cfg.CacheSize = 2 * biggest
	s := openStore(t, dir, "", cfg)
	var fails atomic.Int64
	together(16, func(i int) {
		for j := range 40 {
			f := files[(i+j)%len(files)]
			p := *f.p
			r, err := s.openFile(context.Background(), &p, f.sub)
			if err != nil {
				fails.Add(1)
				t.Errorf("reader %d: open %s/%s: %v", i, p.Path, f.sub, err)
				continue
			}
			got, err := io.ReadAll(r.Reader())
			r.Close()
			if err != nil || string(got) != f.want {
				fails.Add(1)
				t.Errorf("reader %d: %s/%s read %d bytes, %v", i, p.Path, f.sub, len(got), err)
			}
		}
	})
	if u := s.Stats().CacheBytes; u > cfg.CacheSize {
		t.Errorf("usage %d after the readers left, cap %d", u, cfg.CacheSize)
	}
}
