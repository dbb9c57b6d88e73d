package remote

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/remote/narinfo"
	"github.com/narfs/narfs/remote/storepath"
)

// chainCache writes a file:// cache of n signed one-file paths, each but
// the first referring to the previous one, and returns their base names.
func chainCache(t *testing.T, dir string, n int) []string {
	t.Helper()
	os.MkdirAll(filepath.Join(dir, "nar"), 0o755)
	putFile(t, filepath.Join(dir, "nix-cache-info"), []byte("StoreDir: /nix/store\n"))
	var bases []string
	var prev storepath.StorePath
	for i := range n {
		seed := sha256.Sum256(fmt.Appendf(nil, "chain-%d", i))
		sp, err := storepath.Parse(storepath.EncodeNix32(seed[:20]) + fmt.Sprintf("-chain-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		w := nar.NewWriter(&buf)
		w.File(false, 2, bytes.NewReader([]byte{'a' + byte(i%26), '\n'}))
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		ni := &narinfo.NarInfo{StorePath: sp}
		sum := sha256.Sum256(buf.Bytes())
		url := "nar/" + storepath.EncodeNix32(sum[:]) + ".nar"
		setNAR(ni, url, buf.Bytes())
		if i > 0 {
			ni.References = []storepath.StorePath{prev}
		}
		resign(t, ni)
		putFile(t, filepath.Join(dir, url), buf.Bytes())
		writeNarinfo(t, dir, ni)
		bases, prev = append(bases, sp.String()), sp
	}
	return bases
}

// TestLookaheadBoundedByNarinfoCache: the lookahead remembers no more
// references than the narinfo cache holds narinfos, so resolving ever more
// paths (a daemon socket's clients asking for each) costs no memory beyond
// NarinfoCacheSize; before, it remembered up to 2^18 references whatever
// the narinfo cache's size (~200 bytes each).
func TestLookaheadBoundedByNarinfoCache(t *testing.T) {
	dir := t.TempDir()
	bases := chainCache(t, dir, 300)
	cfg := trustedConfig(t)
	cfg.NarinfoCacheSize = 50
	s := openStore(t, dir, "", cfg)
	for _, b := range bases {
		if _, err := s.Resolve(context.Background(), b); err != nil {
			t.Fatal(err)
		}
		waitIdle(t, s.caches[0].ahead.lookq)
	}
	if n := s.caches[0].ahead.lookq.Remembered(); n > cfg.NarinfoCacheSize {
		t.Errorf("the lookahead remembers %d references, more than the narinfo cache's %d narinfos", n, cfg.NarinfoCacheSize)
	}
	held := 0
	for _, b := range bases {
		if p, _ := s.caches[0].up.Cached(b[:32]); p != nil {
			held++
		}
	}
	if held > cfg.NarinfoCacheSize {
		t.Errorf("narinfo cache holds %d", held)
	}
}
