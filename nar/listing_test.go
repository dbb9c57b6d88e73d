package nar

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestListingMatchesNixInEveryCache parses every NAR of every fixture cache
// and checks the listing built from it against Nix's own .ls.
func TestListingMatchesNixInEveryCache(t *testing.T) {
	for _, cache := range caches(t) {
		narinfos, _ := filepath.Glob(filepath.Join(cache, "*.narinfo"))
		if len(narinfos) == 0 {
			t.Fatalf("%s: no narinfos", cache)
		}
		for _, ni := range narinfos {
			hash := strings.TrimSuffix(filepath.Base(ni), ".narinfo")
			t.Run(filepath.Base(cache)+"/"+hash, func(t *testing.T) {
				data := decompressedNAR(t, cache, ni)
				base := filepath.Base(narinfoFields(t, ni)["StorePath"])
				sum := sha256.Sum256(data)
				if got, want := fmt.Sprintf("%s %d", hex.EncodeToString(sum[:]), len(data)), dumpSum(t, base); got != want {
					t.Fatalf("decompressed NAR %s, nix-store --dump %s", got, want)
				}
				built, err := BuildListing(bytes.NewReader(data))
				if err != nil {
					t.Fatal(err)
				}
				want := mustRead(t, filepath.Join(cache, hash+".ls"))
				var got bytes.Buffer
				if err := built.Encode(&got); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got.Bytes(), want) {
					t.Errorf("Encode(BuildListing) differs from Nix's .ls:\n got %.300s\nwant %.300s", got.Bytes(), want)
				}
				decoded, err := DecodeListing(want)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(decoded, built) {
					t.Error("DecodeListing(.ls) differs from BuildListing(NAR)")
				}
			})
		}
	}
}

func TestListingFind(t *testing.T) {
	l, err := DecodeListing(mustRead(t, filepath.Join(fixtureDir, "cache-none", basenameOf(t, "tree-small")[:32]+".ls")))
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]Type{
		"": TypeDirectory, "/": TypeDirectory, "a/x": TypeRegular, "/d1/d2/d3/d4/d5/deep.txt": TypeRegular,
		"d1/d2/": TypeDirectory, "link-to-dir": TypeSymlink, "ünïcödé-名前.txt": TypeRegular, "with space =+?.txt": TypeRegular,
	} {
		n, err := l.Find(path)
		if err != nil || n.Type != want {
			t.Errorf("Find(%q) = %+v, %v; want type %v", path, n, err, want)
		}
	}
	n, _ := l.Find("hello.sh")
	if !n.Executable || n.Size != 32 || n.NarOffset == 0 {
		t.Errorf("hello.sh = %+v", n)
	}
	for path, want := range map[string]error{
		"nope": fs.ErrNotExist, "a/nope": fs.ErrNotExist, "d1/..": fs.ErrNotExist,
		"plain.txt/x": ErrNotDirectory, "link-to-dir/d3": ErrNotDirectory,
	} {
		if _, err := l.Find(path); !errors.Is(err, want) {
			t.Errorf("Find(%q) err = %v, want %v", path, err, want)
		}
	}
}

func TestListingEncodeEscapes(t *testing.T) {
	name := "q\"b\\n\nr\rt\tc\x01\x1f\x7f\xff"
	l := &Listing{Root: &Node{Type: TypeDirectory, Entries: map[string]*Node{
		name: {Type: TypeSymlink, Target: "/x"},
		"e":  {Type: TypeRegular, Size: 0, NarOffset: 0, Executable: true},
	}}}
	b, err := l.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"version":1,"root":{"type":"directory","entries":{"e":{"type":"regular","size":0,"executable":true},"q\"b\\n\nr\rt\tc\u0001\u001f` + "\x7f\xff" + `":{"type":"symlink","target":"/x"}}}}`
	if string(b) != want {
		t.Fatalf("got  %q\nwant %q", b, want)
	}
	back, err := DecodeListing(b)
	if err != nil || !reflect.DeepEqual(back, l) {
		t.Fatalf("round trip: %v %+v", err, back)
	}
}

func TestDecodeListingAcceptsNixHEADStyle(t *testing.T) {
	l, err := DecodeListing([]byte(` { "version" : 1, "root": {"entries":{"f":{"executable":false,"size":3,"type":"regular"},"\u00fc\ud83d\ude00":{"type":"symlink","target":"t"}},"type":"directory"} } `))
	if err != nil {
		t.Fatal(err)
	}
	if n, err := l.Find("f"); err != nil || n.Executable || n.NarOffset != 0 || n.Size != 3 {
		t.Errorf("f = %+v, %v", n, err)
	}
	if _, err := l.Find("ü😀"); err != nil {
		t.Error(err)
	}
}

// Unknown keys are skipped, like unknown narinfo fields, so a listing from a
// newer Nix still reads.
func TestDecodeListingIgnoresUnknownKeys(t *testing.T) {
	doc := `{"version":1,"generator":{"name":"nix","v":[2,35,null,true,-1.5e3,"x"]},` +
		`"root":{"type":"regular","size":3,"narOffset":96,"mtime":0,"xattrs":{}}}`
	l, err := DecodeListing([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if l.Root.Type != TypeRegular || l.Root.Size != 3 || l.Root.NarOffset != 96 {
		t.Errorf("root = %+v", l.Root)
	}
}

func TestDecodeListingRejects(t *testing.T) {
	wrap := func(root string) string { return `{"version":1,"root":` + root + `}` }
	reg := `{"type":"regular","size":1}`
	for name, doc := range map[string]string{
		"version 2":           `{"version":2,"root":` + reg + `}`,
		"no version":          `{"root":` + reg + `}`,
		"no root":             `{"version":1}`,
		"bad unknown value":   `{"version":1,"root":` + reg + `,"x":[1,}`,
		"unknown value deep":  `{"version":1,"root":` + reg + `,"x":` + strings.Repeat("[", MaxDepth+1) + strings.Repeat("]", MaxDepth+1) + `}`,
		"trailing":            wrap(reg) + "x",
		"duplicate key":       wrap(`{"type":"regular","size":1,"size":2}`),
		"duplicate entry":     wrap(`{"type":"directory","entries":{"a":` + reg + `,"a":` + reg + `}}`),
		"duplicate escaped":   wrap(`{"type":"regular","size":1,"\u0073ize":2}`),
		"duplicate 9th key":   `{"version":1,"a":0,"b":0,"c":0,"d":0,"e":0,"f":0,"g":0,"h":0,"a":1,"root":` + reg + `}`,
		"duplicate late key":  `{"version":1,"a":0,"b":0,"c":0,"d":0,"e":0,"f":0,"g":0,"h":0,"i":0,"i":1,"root":` + reg + `}`,
		"negative size":       wrap(`{"type":"regular","size":-1}`),
		"fractional size":     wrap(`{"type":"regular","size":1.5}`),
		"huge size":           wrap(`{"type":"regular","size":9223372036854775808}`),
		"no size":             wrap(`{"type":"regular"}`),
		"unknown type":        wrap(`{"type":"fifo"}`),
		"no type":             wrap(`{"size":1}`),
		"dir without entries": wrap(`{"type":"directory"}`),
		"symlink no target":   wrap(`{"type":"symlink"}`),
		"symlink with size":   wrap(`{"type":"symlink","target":"t","size":1}`),
		"empty target":        wrap(`{"type":"symlink","target":""}`),
		"dot name":            wrap(`{"type":"directory","entries":{".":` + reg + `}}`),
		"dotdot name":         wrap(`{"type":"directory","entries":{"..":` + reg + `}}`),
		"slash name":          wrap(`{"type":"directory","entries":{"a/b":` + reg + `}}`),
		"NUL name":            wrap(`{"type":"directory","entries":{"a\u0000":` + reg + `}}`),
		"empty name":          wrap(`{"type":"directory","entries":{"":` + reg + `}}`),
		"too deep":            wrap(strings.Repeat(`{"type":"directory","entries":{"d":`, MaxDepth) + reg + strings.Repeat(`}}`, MaxDepth)),
		"raw control char":    wrap(`{"type":"symlink","target":"a` + "\n" + `"}`),
		"bad escape":          wrap(`{"type":"symlink","target":"\x"}`),
		"unterminated":        `{"version":1,"root":{"type":"symlink","target":"abc`,
		"empty":               ``,
		"array":               `[]`,
		"executable string":   wrap(`{"type":"regular","size":1,"executable":"yes"}`),
	} {
		if _, err := DecodeListing([]byte(doc)); !errors.Is(err, ErrInvalidListing) {
			t.Errorf("%s: err = %v, want ErrInvalidListing", name, err)
		}
	}
}

func FuzzDecodeListing(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(fixtureDir, "cache-none", "*.ls"))
	for _, file := range files {
		if b := mustRead(f, file); len(b) < 64<<10 {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := DecodeListing(data)
		if err != nil {
			if !errors.Is(err, ErrInvalidListing) {
				t.Fatalf("error not wrapping ErrInvalidListing: %v", err)
			}
			return
		}
		// Keys are unique in every object it accepts (checked with
		// encoding/json, which keeps names byte for byte only in UTF-8).
		if utf8.Valid(data) && duplicateKeys(data) {
			t.Fatalf("accepted a duplicate key: %q", data)
		}
		// Whatever decodes must encode and decode to the same listing.
		b, err := l.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		back, err := DecodeListing(b)
		if err != nil {
			t.Fatalf("re-decoding %q: %v", b, err)
		}
		if !reflect.DeepEqual(back, l) {
			t.Fatal("encode/decode round trip changed the listing")
		}
	})
}

func TestDuplicateKeysHelper(t *testing.T) {
	for doc, want := range map[string]bool{
		`{"a":1,"b":{"a":2},"c":[{"a":1},{"a":1}]}`: false,
		`{"a":1,"b":2,"a":3}`:                       true,
		`{"a":{"x":1,"x":2}}`:                       true,
		`{"a":[1,{"k":[],"k":0}]}`:                  true,
		`{"a":"b","b":"a"}`:                         false,
	} {
		if got := duplicateKeys([]byte(doc)); got != want {
			t.Errorf("duplicateKeys(%s) = %v", doc, got)
		}
	}
}

// duplicateKeys reports whether a JSON document (valid: DecodeListing
// accepted it) repeats a key in one of its objects.
func duplicateKeys(data []byte) bool {
	type frame struct {
		object, wantKey bool
		keys            map[string]bool
	}
	var stack []*frame
	dec := json.NewDecoder(bytes.NewReader(data))
	for {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.object && top.wantKey {
			if k, ok := tok.(string); ok {
				if top.keys[k] {
					return true
				}
				top.keys[k] = true
				top.wantKey = false
				continue
			}
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{object: true, wantKey: true, keys: map[string]bool{}})
			continue
		case json.Delim('['):
			stack = append(stack, &frame{})
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
		// A value ended: the enclosing object wants its next key.
		if len(stack) > 0 && stack[len(stack)-1].object {
			stack[len(stack)-1].wantKey = true
		}
	}
}
