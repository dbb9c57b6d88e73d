package chunkindex

import (
	"testing"

	"github.com/narfs/narfs/remote/narinfo"
)

// FuzzDecode: an index from a hostile cache never panics Decode, and
// whatever Decode accepts satisfies every invariant a reader relies on.
func FuzzDecode(f *testing.F) {
	for _, comp := range []string{"none", "zstd"} {
		f.Add(build(f, comp).index)
	}
	f.Fuzz(func(t *testing.T, object []byte) {
		x, err := Decode(object)
		if err != nil {
			return
		}
		if err := x.check(); err != nil {
			t.Fatalf("Decode accepted an index that fails check: %v", err)
		}
		var off int64
		for _, c := range x.Chunks {
			if c.NarOffset != off || c.NarLen <= 0 || c.NarLen > MaxChunk {
				t.Fatal("bad chunk table accepted")
			}
			off += c.NarLen
		}
		if off != x.NarSize {
			t.Fatal("chunks do not cover the NAR")
		}
		first, last := x.Span(0, x.NarSize)
		if first != 0 || last != len(x.Chunks) {
			t.Fatal("Span of the whole NAR is not every chunk")
		}
		ni := &narinfo.NarInfo{}
		_ = x.Matches(ni)
	})
}
