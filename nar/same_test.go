package nar

import "testing"

func sameFixture() *Node {
	return &Node{Type: TypeDirectory, Entries: map[string]*Node{
		"bin": {Type: TypeDirectory, Entries: map[string]*Node{
			"hello": {Type: TypeRegular, Size: 10, Executable: true, NarOffset: 400},
			"empty": {Type: TypeRegular, NarOffset: 600},
		}},
		"link": {Type: TypeSymlink, Target: "bin/hello"},
	}}
}

// TestSameTree: every field a user sees makes two trees differ; a
// NarOffset counts only when both sides have one.
func TestSameTree(t *testing.T) {
	if !SameTree(sameFixture(), sameFixture()) {
		t.Fatal("a tree differs from its copy")
	}
	for _, c := range []struct {
		name string
		edit func(*Node)
		same bool
	}{
		{"size", func(n *Node) { n.Entries["bin"].Entries["hello"].Size = 11 }, false},
		{"executable", func(n *Node) { n.Entries["bin"].Entries["hello"].Executable = false }, false},
		{"target", func(n *Node) { n.Entries["link"].Target = "bin/hellp" }, false},
		{"type", func(n *Node) { n.Entries["link"] = &Node{Type: TypeRegular} }, false},
		{"extra name", func(n *Node) { n.Entries["x"] = &Node{Type: TypeRegular} }, false},
		{"renamed", func(n *Node) { n.Entries["lnk"] = n.Entries["link"]; delete(n.Entries, "link") }, false},
		{"offset moved", func(n *Node) { n.Entries["bin"].Entries["hello"].NarOffset = 408 }, false},
		{"offset unknown", func(n *Node) { n.Entries["bin"].Entries["empty"].NarOffset = 0 }, true},
	} {
		b := sameFixture()
		c.edit(b)
		if got := SameTree(sameFixture(), b); got != c.same {
			t.Errorf("%s: SameTree = %v, want %v", c.name, got, c.same)
		}
		if got := SameTree(b, sameFixture()); got != c.same {
			t.Errorf("%s (swapped): SameTree = %v, want %v", c.name, got, c.same)
		}
	}
}
