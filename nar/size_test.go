package nar

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// TestNARSizeOfFixtureDumps: the size computed from the listing of every
// nix-store --dump is the dump's length, and its offsets are the Reader's.
func TestNARSizeOfFixtureDumps(t *testing.T) {
	for name, data := range smallNARs(t) {
		l, err := BuildListing(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if n, err := l.NARSize(); err != nil || n != int64(len(data)) {
			t.Errorf("%s: NARSize = %d, %v; the dump has %d bytes", name, n, err, len(data))
		}
		if err := l.Check(int64(len(data))); err != nil {
			t.Errorf("%s: Check: %v", name, err)
		}
	}
}

// TestCheckFixtureListings holds every cache's .ls against its narinfo's
// NarSize, and the .ls of cache-none against the NAR it describes.
func TestCheckFixtureListings(t *testing.T) {
	for _, cache := range caches(t) {
		lss, _ := filepath.Glob(filepath.Join(cache, "*.ls"))
		if len(lss) == 0 {
			t.Fatalf("%s: no listings", cache)
		}
		for _, ls := range lss {
			name := filepath.Base(cache) + "/" + filepath.Base(ls)
			l, err := DecodeListing(mustRead(t, ls))
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			narSize, err := strconv.ParseInt(narinfoFields(t, strings.TrimSuffix(ls, ".ls")+".narinfo")["NarSize"], 10, 64)
			if err != nil {
				t.Fatalf("%s: NarSize: %v", name, err)
			}
			if n, err := l.NARSize(); err != nil || n != narSize {
				t.Errorf("%s: NARSize = %d, %v; NarSize %d", name, n, err, narSize)
			}
			if err := l.Check(narSize); err != nil {
				t.Errorf("%s: Check: %v", name, err)
			}
			if err := l.Check(narSize + 8); !errors.Is(err, ErrInvalidListing) {
				t.Errorf("%s: Check(NarSize+8) = %v, want ErrInvalidListing", name, err)
			}
		}
	}
	nars, _ := filepath.Glob(filepath.Join(fixtureDir, "cache-none", "nar", "*.nar"))
	for _, p := range nars {
		data := mustRead(t, p)
		built, err := BuildListing(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		offsets := map[string]int64{}
		walkFiles(built.Root, "", func(path string, n *Node) { offsets[path] = n.NarOffset })
		if len(offsets) == 0 {
			continue
		}
		// Every offset the Reader reports is checked: moving any one of
		// them must fail.
		for path, off := range offsets {
			n, _ := built.Find(path)
			n.NarOffset = off + 8
			if err := built.Check(int64(len(data))); !errors.Is(err, ErrInvalidListing) {
				t.Errorf("%s: %q at narOffset %d (NAR: %d): Check = %v", filepath.Base(p), path, off+8, off, err)
			}
			n.NarOffset = off
		}
		if err := built.Check(int64(len(data))); err != nil {
			t.Errorf("%s: Check of BuildListing: %v", filepath.Base(p), err)
		}
	}
}

func walkFiles(n *Node, path string, fn func(string, *Node)) {
	switch n.Type {
	case TypeRegular:
		fn(path, n)
	case TypeDirectory:
		for name, c := range n.Entries {
			walkFiles(c, joinPath(path, name), fn)
		}
	}
}

// writeListing writes the NAR a listing describes, files full of zeros.
func writeListing(w *Writer, n *Node) error {
	switch n.Type {
	case TypeRegular:
		return w.File(n.Executable, n.Size, zeroReader{})
	case TypeSymlink:
		return w.Symlink(n.Target)
	case TypeDirectory:
		if err := w.Directory(); err != nil {
			return err
		}
		names := make([]string, 0, len(n.Entries))
		for name := range n.Entries {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			if err := w.Entry(name); err != nil {
				return err
			}
			if err := writeListing(w, n.Entries[name]); err != nil {
				return err
			}
		}
		return w.EndDirectory()
	}
	return errors.New("unknown node type")
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// narOf encodes a listing and reads the result back.
func narOf(t testing.TB, l *Listing) ([]byte, *Listing) {
	t.Helper()
	var buf bytes.Buffer
	w := NewWriter(&buf)
	if err := writeListing(w, l.Root); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	built, err := BuildListing(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatalf("the NAR of the listing does not read back: %v", err)
	}
	return buf.Bytes(), built
}

// TestNARSizeEdgeCases covers what the fixtures may lack: empty and
// executable files of every padding, empty directories, long names.
func TestNARSizeEdgeCases(t *testing.T) {
	reg := func(size int64, exec bool) *Node { return &Node{Type: TypeRegular, Size: size, Executable: exec} }
	dir := func(kv ...any) *Node {
		n := &Node{Type: TypeDirectory, Entries: map[string]*Node{}}
		for i := 0; i < len(kv); i += 2 {
			n.Entries[kv[i].(string)] = kv[i+1].(*Node)
		}
		return n
	}
	entries := dir()
	for i := range 17 {
		entries.Entries["f"+strconv.Itoa(i)] = reg(int64(i), i%3 == 0)
	}
	for name, root := range map[string]*Node{
		"empty file":      reg(0, false),
		"empty exec":      reg(0, true),
		"one byte":        reg(1, false),
		"eight bytes":     reg(8, true),
		"symlink":         {Type: TypeSymlink, Target: "t"},
		"long target":     {Type: TypeSymlink, Target: strings.Repeat("t", MaxTargetLen)},
		"empty dir":       dir(),
		"nested":          dir("a", dir("b", dir()), "B", reg(3, true), strings.Repeat("n", MaxNameLen), reg(9, false), "\xff", &Node{Type: TypeSymlink, Target: "../x"}),
		"paddings":        entries,
		"unsorted names":  dir("z", reg(1, false), "a", reg(2, false), "m", reg(0, false)),
		"deep":            deepListing(MaxDepth - 1),
		"empty file last": dir("a", reg(5, false), "b", reg(0, false)),
	} {
		l := &Listing{Root: root}
		data, built := narOf(t, l)
		if n, err := l.NARSize(); err != nil || n != int64(len(data)) {
			t.Errorf("%s: NARSize = %d, %v; NAR has %d bytes", name, n, err, len(data))
		}
		// Without offsets (newer Nix) and with the Reader's.
		if err := l.Check(int64(len(data))); err != nil {
			t.Errorf("%s: Check without offsets: %v", name, err)
		}
		if err := built.Check(int64(len(data))); err != nil {
			t.Errorf("%s: Check with the Reader's offsets: %v", name, err)
		}
	}
}

func deepListing(depth int) *Node {
	n := &Node{Type: TypeSymlink, Target: "t"}
	for range depth {
		n = &Node{Type: TypeDirectory, Entries: map[string]*Node{"d": n}}
	}
	return n
}

// Listings come from untrusted caches: no sizes may wrap or panic.
func TestNARSizeRejects(t *testing.T) {
	reg := func(size int64) *Node { return &Node{Type: TypeRegular, Size: size} }
	dir := func(entries map[string]*Node) *Node { return &Node{Type: TypeDirectory, Entries: entries} }
	for name, l := range map[string]*Listing{
		"max int64 file":   {Root: reg(math.MaxInt64)},
		"just too big":     {Root: reg(math.MaxInt64 - 100)},
		"two halves":       {Root: dir(map[string]*Node{"a": reg(math.MaxInt64 / 2), "b": reg(math.MaxInt64 / 2)})},
		"padding wraps":    {Root: reg(math.MaxInt64 - 96 - 2)},
		"negative size":    {Root: reg(-1)},
		"min int64":        {Root: reg(math.MinInt64)},
		"no root":          {},
		"nil entry":        {Root: dir(map[string]*Node{"a": nil})},
		"unknown type":     {Root: &Node{Type: 9}},
		"empty target":     {Root: &Node{Type: TypeSymlink}},
		"bad name":         {Root: dir(map[string]*Node{"a/b": reg(1)})},
		"dotdot":           {Root: dir(map[string]*Node{"..": reg(1)})},
		"too deep":         {Root: deepListing(MaxDepth)},
		"offset past size": {Root: &Node{Type: TypeRegular, Size: 1, NarOffset: math.MaxInt64}},
	} {
		n, err := l.NARSize()
		cerr := l.Check(n)
		if name == "offset past size" {
			// The size is fine; only Check looks at offsets.
			if err != nil || !errors.Is(cerr, ErrInvalidListing) {
				t.Errorf("%s: NARSize err = %v, Check err = %v", name, err, cerr)
			}
			continue
		}
		if !errors.Is(err, ErrInvalidListing) || n != 0 {
			t.Errorf("%s: NARSize = %d, %v; want ErrInvalidListing", name, n, err)
		}
		if !errors.Is(cerr, ErrInvalidListing) {
			t.Errorf("%s: Check = %v; want ErrInvalidListing", name, cerr)
		}
	}
}

func FuzzListingSize(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(fixtureDir, "cache-none", "*.ls"))
	for _, file := range files {
		if b := mustRead(f, file); len(b) < 64<<10 {
			ni := narinfoFields(f, strings.TrimSuffix(file, ".ls")+".narinfo")
			size, _ := strconv.ParseInt(ni["NarSize"], 10, 64)
			f.Add(b, size)
		}
	}
	f.Add([]byte(`{"version":1,"root":{"type":"regular","size":9223372036854775807}}`), int64(math.MaxInt64))
	f.Add([]byte(`{"version":1,"root":{"type":"directory","entries":{"a":{"type":"regular","size":5,"narOffset":200},"b":{"type":"regular","size":0}}}}`), int64(-1))
	f.Fuzz(func(t *testing.T, ls []byte, narSize int64) {
		l, err := DecodeListing(ls)
		if err != nil {
			return
		}
		n, err := l.NARSize()
		cerr := l.Check(narSize)
		if err != nil {
			if !errors.Is(err, ErrInvalidListing) || cerr == nil {
				t.Fatalf("NARSize: %v, but Check(%d): %v", err, narSize, cerr)
			}
			return
		}
		if cerr == nil && n != narSize {
			t.Fatalf("Check(%d) accepts a listing whose NARSize is %d", narSize, n)
		}
		if cerr != nil && !errors.Is(cerr, ErrInvalidListing) {
			t.Fatalf("Check error not wrapping ErrInvalidListing: %v", cerr)
		}
		if n > 64<<10 {
			return
		}
		// Small enough to build: the NAR the listing describes has
		// exactly that size, and its offsets pass Check.
		data, built := narOf(t, l)
		if int64(len(data)) != n {
			t.Fatalf("NARSize %d, but the NAR has %d bytes", n, len(data))
		}
		if err := built.Check(n); err != nil {
			t.Fatalf("Check of the NAR's own listing: %v", err)
		}
		if l.Check(n) == nil {
			// Accepted offsets are the real ones (or unknown).
			walkFiles(l.Root, "", func(path string, node *Node) {
				b, _ := built.Find(path)
				if node.NarOffset != 0 && node.NarOffset != b.NarOffset {
					t.Fatalf("%q: Check accepted narOffset %d, the NAR has %d", path, node.NarOffset, b.NarOffset)
				}
			})
		}
	})
}

// synthListing returns the .ls of dirs directories of files entries each,
// every fifth a symlink, names of nameLen bytes.
func synthListing(dirs, files, nameLen int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"version":1,"root":{"type":"directory","entries":{`)
	for d := range dirs {
		if d > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"d%07d":{"type":"directory","entries":{`, d)
		for f := range files {
			if f > 0 {
				b.WriteByte(',')
			}
			if f%5 == 4 {
				fmt.Fprintf(&b, `"%0*d":{"type":"symlink","target":"../lib/%d"}`, nameLen, f, f)
			} else {
				fmt.Fprintf(&b, `"%0*d":{"type":"regular","size":%d}`, nameLen, f, f%50)
			}
		}
		b.WriteString(`}}`)
	}
	b.WriteString(`}}}`)
	return b.Bytes()
}

func TestMemSizeGrows(t *testing.T) {
	size := func(dirs, files, nameLen int) int64 {
		l, err := DecodeListing(synthListing(dirs, files, nameLen))
		if err != nil {
			t.Fatal(err)
		}
		return l.MemSize()
	}
	base := size(2, 10, 8)
	if more := size(2, 20, 8); more <= base {
		t.Errorf("twice the entries: MemSize %d, was %d", more, base)
	}
	if longer := size(2, 10, 100); longer < base+2*10*(100-8) {
		t.Errorf("names 92 bytes longer: MemSize %d, was %d", longer, base)
	}
	if n := (&Listing{Root: &Node{Type: TypeSymlink, Target: strings.Repeat("t", 1000)}}).MemSize(); n < 1000 {
		t.Errorf("MemSize of a 1000-byte symlink = %d", n)
	}
}

// MemSize is an estimate, but it must be in the right ballpark of what
// the heap really holds for a large listing, whatever its shape.
func TestMemSizeMatchesHeap(t *testing.T) {
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	for _, shape := range []struct{ dirs, files, nameLen int }{{1, 100000, 10}, {1000, 100, 40}, {50000, 2, 5}} {
		data := synthListing(shape.dirs, shape.files, shape.nameLen)
		before := heap()
		l, err := DecodeListing(data)
		if err != nil {
			t.Fatal(err)
		}
		real := float64(heap()) - float64(before)
		est := float64(l.MemSize())
		if real < est/3 || real > est*3 {
			t.Errorf("%+v: MemSize %.0f, heap grew by %.0f", shape, est, real)
		}
		runtime.KeepAlive(l)
		runtime.KeepAlive(data)
	}
}
