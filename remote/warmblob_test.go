package remote

import (
	"context"
	"io"
	"testing"

	"github.com/narfs/narfs/remote/internal/trust"
	"github.com/narfs/narfs/remote/internal/tune"
)

// Opens of a fetched path's small files after the first share its blob's
// descriptor and cost no syscall; each still reads its own bytes, and the
// descriptor outlives every reader only by warmBlobLinger.
func TestWarmBlobSharedByOpens(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, fixtureDir+"/cache-zstd", "", trustedConfig(t))
	p := mustResolve(t, s, pathTreeSmall)
	nd := narBytes(t, pathTreeSmall)
	sub, node := firstFile(buildListing(t, nd))
	want := string(nd[node.NarOffset : node.NarOffset+node.Size])

	first, err := s.OpenFile(ctx, p, sub)
	if err != nil {
		t.Fatal(err)
	}
	second, err := s.OpenFile(ctx, p, sub)
	if err != nil {
		t.Fatal(err)
	}
	if first.File != second.File {
		t.Error("the second open of a small file opened the blob again")
	}
	for _, f := range []*LocalFile{first, second} {
		if got, _ := io.ReadAll(f.Reader()); string(got) != want {
			t.Errorf("read %q, want %q", got, want)
		}
	}
	first.Close()
	if got, _ := io.ReadAll(second.Reader()); string(got) != want {
		t.Error("closing one reader of a warm blob broke another")
	}
	second.Close()

	s.warmMu.Lock()
	b := s.warm[trust.EntryKey(p.v)]
	s.warmMu.Unlock()
	if b == nil {
		t.Fatal("no warm blob after opens of a small file")
	}
	s.warmMu.Lock()
	b.idle = b.idle.Add(-tune.WarmLinger)
	s.warmMu.Unlock()
	s.lingerWarm(b)
	s.warmMu.Lock()
	defer s.warmMu.Unlock()
	if !b.closed || s.warm[trust.EntryKey(p.v)] != nil {
		t.Error("a warm blob idle for warmBlobLinger is still open")
	}
}
