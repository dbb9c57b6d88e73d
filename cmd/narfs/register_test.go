package main

import (
	"bufio"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/narfs/narfs/remote"
	"github.com/narfs/narfs/remote/narinfo"
	"github.com/narfs/narfs/remote/storepath"
)

func testPath(t *testing.T, i int, refs ...*remote.PathInfo) *remote.PathInfo {
	t.Helper()
	sp, err := storepath.Parse(fmt.Sprintf("%032d-p%d", i, i))
	if err != nil {
		t.Fatal(err)
	}
	ni := &narinfo.NarInfo{StorePath: sp, NarHash: storepath.Hash{Algo: "sha256", Digest: make([]byte, 32)}, NarSize: 8}
	for _, r := range refs {
		ni.References = append(ni.References, r.Path)
	}
	return &remote.PathInfo{Path: sp, NarInfo: ni}
}

// referencesFirst puts each path after what it references: Nix's
// --load-db needs no order within one run, but a registration read by
// tools that do (or split into parts) must be closed at every prefix.
// Self-references, references outside the set, a signed cycle and a
// chain deeper than any recursion limit are all fine.
func TestReferencesFirst(t *testing.T) {
	a := testPath(t, 1)
	b := testPath(t, 2, a)
	c := testPath(t, 3, b, a)
	c.NarInfo.References = append(c.NarInfo.References, c.Path) // self
	outside := testPath(t, 9)
	d := testPath(t, 4, outside, c)
	for _, in := range [][]*remote.PathInfo{{d, c, b, a}, {a, b, c, d}, {c, a, d, b}} {
		got := referencesFirst(in)
		if !slices.Equal(got, []*remote.PathInfo{a, b, c, d}) {
			t.Errorf("order of %v: %v", in, got)
		}
	}
	// A cycle (which a store cannot hold, but a cache can sign) ends.
	x, y := testPath(t, 5), testPath(t, 6)
	x.NarInfo.References = []storepath.StorePath{y.Path}
	y.NarInfo.References = []storepath.StorePath{x.Path}
	if got := referencesFirst([]*remote.PathInfo{x, y}); len(got) != 2 {
		t.Errorf("cycle: %d paths out", len(got))
	}
	// A chain of 100,000 paths.
	chain := []*remote.PathInfo{testPath(t, 10)}
	for i := 11; i < 100_010; i++ {
		chain = append(chain, testPath(t, i, chain[len(chain)-1]))
	}
	rev := slices.Clone(chain)
	slices.Reverse(rev)
	if got := referencesFirst(rev); !slices.Equal(got, chain) {
		t.Errorf("a long chain is not in reference order")
	}
}

// writeRegistration writes nix-store --dump-db's record; a deriver that
// is not a .drv store path is left out, as Nix would refuse the line.
func TestWriteRegistration(t *testing.T) {
	a := testPath(t, 1)
	b := testPath(t, 2, a)
	b.NarInfo.Deriver = "00000000000000000000000000000007-p.drv"
	var sb strings.Builder
	w := bufio.NewWriter(&sb)
	if err := writeRegistration(w, "/nix/store", b); err != nil {
		t.Fatal(err)
	}
	b.NarInfo.Deriver = "../../etc/passwd"
	if err := writeRegistration(w, "/nix/store", b); err != nil {
		t.Fatal(err)
	}
	w.Flush()
	zero := strings.Repeat("0", 64)
	want := "/nix/store/00000000000000000000000000000002-p2\n" + zero + "\n8\n/nix/store/00000000000000000000000000000007-p.drv\n1\n/nix/store/00000000000000000000000000000001-p1\n" +
		"/nix/store/00000000000000000000000000000002-p2\n" + zero + "\n8\n\n1\n/nix/store/00000000000000000000000000000001-p1\n"
	if sb.String() != want {
		t.Errorf("got\n%s\nwant\n%s", sb.String(), want)
	}
	b.NarInfo.NarHash = storepath.Hash{Algo: "sha1", Digest: make([]byte, 20)}
	if err := writeRegistration(w, "/nix/store", b); err == nil {
		t.Errorf("a SHA-1 NarHash was registered")
	}
}
