package pathstate

import (
	"encoding/json"
	"testing"

	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/remote/internal/trust"
)

func file(size int64, exec bool) *nar.Node {
	return &nar.Node{Type: nar.TypeRegular, Size: size, Executable: exec}
}

func dir(entries map[string]*nar.Node) *nar.Listing {
	return &nar.Listing{Root: &nar.Node{Type: nar.TypeDirectory, Entries: entries}}
}

// verified makes a trust.Listing of l the way a committed entry's
// listing.json becomes one.
func verified(t *testing.T, l *nar.Listing) *trust.Listing {
	t.Helper()
	b, err := json.Marshal(l)
	if err != nil {
		t.Fatal(err)
	}
	v, err := trust.Recorded(b)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestVerifiedNeverReplacedByUnverified(t *testing.T) {
	tb := New(1 << 20)
	v := verified(t, dir(map[string]*nar.Node{"a": file(1, false)}))
	tb.SetVerified("h", v)
	tb.SetUnverified("h", dir(map[string]*nar.Node{"b": file(2, false)}), 10)
	tb.SetPeeked("h", file(3, false))
	st, ok := tb.Get("h")
	if !ok || st.Verified != v || st.Unverified != nil || st.Peeked != nil {
		t.Fatalf("state %+v, want the verified listing only", st)
	}
	if st.Tree() != v.Tree() {
		t.Fatal("Tree is not the verified tree")
	}
}

func TestGenMovesOnlyOnContradiction(t *testing.T) {
	tb := New(1 << 20)
	var told []uint64
	cancel := tb.Subscribe(func(hash string, gen uint64) {
		if hash != "lie" {
			t.Errorf("told about %s", hash)
		}
		told = append(told, gen)
	})
	defer cancel()

	// Shown a tree that the verified one agrees with: no move.
	shown := dir(map[string]*nar.Node{"a": file(1, false)})
	tb.SetUnverified("ok", shown, 10)
	if g := tb.Handed("ok", shown.Root, shown); g != 0 {
		t.Fatalf("gen %d before verification", g)
	}
	if _, c := tb.SetVerified("ok", verified(t, dir(map[string]*nar.Node{"a": file(1, false)}))); c {
		t.Fatal("an agreeing listing contradicted")
	}
	if tb.Gen("ok") != 0 {
		t.Fatal("gen moved without contradiction")
	}

	// Shown a size the NAR contradicts: one move, subscribers told.
	lie := dir(map[string]*nar.Node{"a": file(1, false)})
	tb.SetUnverified("lie", lie, 10)
	tb.Handed("lie", lie.Root, lie)
	gen, c := tb.SetVerified("lie", verified(t, dir(map[string]*nar.Node{"a": file(2, false)})))
	if !c || gen != 1 || tb.Gen("lie") != 1 || len(told) != 1 || told[0] != 1 {
		t.Fatalf("gen %d contradicted %v told %v, want 1 true [1]", gen, c, told)
	}
	// A later verification (the entry re-read) changes nothing.
	if gen, _ := tb.SetVerified("lie", verified(t, dir(map[string]*nar.Node{"a": file(3, false)}))); gen != 1 || len(told) != 1 {
		t.Fatalf("gen %d told %v after a second verification", gen, told)
	}
}

func TestPeekedDirectoryRootAgrees(t *testing.T) {
	tb := New(1 << 20)
	root := &nar.Node{Type: nar.TypeDirectory} // from a NAR header: no entries
	tb.SetPeeked("h", root)
	tb.Handed("h", root, nil)
	if _, c := tb.SetVerified("h", verified(t, dir(map[string]*nar.Node{"a": file(1, false)}))); c {
		t.Fatal("a peeked directory root contradicted by a directory")
	}
	tb.Handed("x", file(1, false), nil)
	if gen, c := tb.SetVerified("x", verified(t, &nar.Listing{Root: file(1, true)})); !c || gen != 1 {
		t.Fatalf("executable bit change: gen %d contradicted %v", gen, c)
	}
}

func TestEvictionKeepsHanded(t *testing.T) {
	tb := New(100)
	shown := dir(map[string]*nar.Node{"a": file(1, false)})
	tb.SetUnverified("h", shown, 20)
	tb.Handed("h", shown.Root, shown)
	for _, k := range []string{"1", "2", "3", "4", "5"} {
		tb.SetUnverified(k, dir(nil), 20)
	}
	if _, ok := tb.Get("h"); ok {
		t.Fatal("h not evicted over budget")
	}
	if tb.Usage() > 100 {
		t.Fatalf("usage %d over budget", tb.Usage())
	}
	if gen, c := tb.SetVerified("h", verified(t, dir(map[string]*nar.Node{"a": file(9, false)}))); !c || gen != 1 {
		t.Fatalf("after eviction: gen %d contradicted %v, want a move", gen, c)
	}
	tb.Forget("h")
	if tb.Gen("h") != 0 {
		t.Fatal("Forget kept the record")
	}
}

// TestHandedAfterVerification: a caller that read the unverified state
// just before the path was verified hands it in after; a lie must still
// move the generation and reach the subscribers, or the kernel would keep
// what it was shown.
func TestHandedAfterVerification(t *testing.T) {
	tb := New(1 << 20)
	var told []uint64
	defer tb.Subscribe(func(hash string, gen uint64) { told = append(told, gen) })()
	v := verified(t, dir(map[string]*nar.Node{"a": file(2, false)}))

	lie := dir(map[string]*nar.Node{"a": file(1, false)})
	tb.SetUnverified("h", lie, 10)
	if _, c := tb.SetVerified("h", v); c {
		// The unverified listing was kept but not yet shown to anyone.
		t.Log("kept listing contradicted (nothing handed yet)")
	}
	if gen := tb.Handed("h", lie.Root, lie); gen != 1 || tb.Gen("h") != 1 || len(told) != 1 || told[0] != 1 {
		t.Fatalf("a lie handed in after verification: gen %d (Gen %d), told %v; want 1, [1]", gen, tb.Gen("h"), told)
	}
	// Once more: the record is done, the lie still contradicts, it moves again.
	if gen := tb.Handed("h", lie.Root, lie); gen != 2 || len(told) != 2 {
		t.Fatalf("second late lie: gen %d told %v", gen, told)
	}

	// The truth handed in late moves nothing.
	truth := dir(map[string]*nar.Node{"a": file(2, false)})
	tb.SetVerified("ok", verified(t, truth))
	if gen := tb.Handed("ok", truth.Root, truth); gen != 0 || tb.Gen("ok") != 0 || len(told) != 2 {
		t.Fatalf("the truth handed in late: gen %d told %v", gen, told)
	}
}
