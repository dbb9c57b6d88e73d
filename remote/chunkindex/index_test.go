package chunkindex

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/remote/narinfo"
	"github.com/narfs/narfs/remote/storepath"
)

// testNAR is a directory with small files, one file of several chunks,
// a solo-sized file and a symlink.
func testNAR(t testing.TB) []byte {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	blob := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.IntN(16)) // compressible, not trivially
		}
		return b
	}
	var buf bytes.Buffer
	w := nar.NewWriter(&buf)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(w.Directory())
	for i, size := range []int{10, 3000, 200 << 10, 2<<20 + 12345, 5, 70000} {
		must(w.Entry(string(rune('a' + i))))
		b := blob(size)
		must(w.File(i == 3, int64(len(b)), bytes.NewReader(b)))
	}
	must(w.Entry("z"))
	must(w.Symlink("a"))
	must(w.EndDirectory())
	must(w.Close())
	return buf.Bytes()
}

type built struct {
	nar, object, index []byte
	x                  *Index
	ni                 *narinfo.NarInfo
	key                narinfo.SecretKey
}

func build(t testing.TB, comp string) *built {
	t.Helper()
	narBytes := testNAR(t)
	l, err := nar.BuildListing(bytes.NewReader(narBytes))
	if err != nil {
		t.Fatal(err)
	}
	ends, err := Plan(l, int64(len(narBytes)))
	if err != nil {
		t.Fatal(err)
	}
	var obj bytes.Buffer
	b, err := NewBuilder(&obj, ends, comp, zstd.SpeedDefault)
	if err != nil {
		t.Fatal(err)
	}
	// Odd write sizes: the builder must cut at the planned ends anyway.
	for p := narBytes; len(p) > 0; {
		n := min(len(p), 7777)
		if _, err := b.Write(p[:n]); err != nil {
			t.Fatal(err)
		}
		p = p[n:]
	}
	chunks, size, fh, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256(narBytes)
	sp := storepath.StorePath{Hash: "ymydngcp0syr2bpvigprvim861rmkrvc", Name: "indexed"}
	x := &Index{StorePath: sp.Abs(storepath.DefaultStoreDir), NarHash: storepath.Hash{Algo: "sha256", Digest: d[:]}, NarSize: int64(len(narBytes)),
		URL: "nar/x.nar", Compression: comp, FileSize: size, FileHash: fh, Chunks: chunks, Listing: l}
	enc, err := x.Encode()
	if err != nil {
		t.Fatal(err)
	}
	_, priv, _ := ed25519.GenerateKey(nil)
	key := narinfo.SecretKey{Name: "test-1", Key: priv}
	ni := &narinfo.NarInfo{StorePath: sp, URL: "nar/x.nar", Compression: comp, NarHash: x.NarHash, NarSize: x.NarSize, FileSize: size, FileHash: &fh}
	ni.Set(KeyURL, "index/x.nidx")
	ni.Set(KeySize, "1")
	ni.Set(KeySig, Sign(key, ni, enc))
	return &built{nar: narBytes, object: obj.Bytes(), index: enc, x: x, ni: ni, key: key}
}

func TestRoundTrip(t *testing.T) {
	for _, comp := range []string{"none", "zstd"} {
		t.Run(comp, func(t *testing.T) {
			b := build(t, comp)
			if _, err := Verify(b.ni, b.index, []narinfo.PublicKey{b.key.Public()}); err != nil {
				t.Fatal(err)
			}
			x, err := Decode(b.index)
			if err != nil {
				t.Fatal(err)
			}
			if err := x.Matches(b.ni); err != nil {
				t.Fatal(err)
			}
			// Every chunk decodes on its own to its NAR range.
			var whole []byte
			for _, c := range x.Chunks {
				out, err := x.DecodeChunk(nil, c, b.object[c.FileOffset:c.FileOffset+c.FileLen])
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(out, b.nar[c.NarOffset:c.NarEnd()]) {
					t.Fatalf("chunk at %d decodes to other bytes", c.NarOffset)
				}
				whole = append(whole, out...)
			}
			if !bytes.Equal(whole, b.nar) {
				t.Fatal("chunks do not make the NAR")
			}
			if comp == "zstd" {
				// The object is an ordinary zstd stream of the NAR.
				d, _ := zstd.NewReader(nil)
				got, err := d.DecodeAll(b.object, nil)
				if err != nil || !bytes.Equal(got, b.nar) {
					t.Fatalf("object does not decode as one stream: %v", err)
				}
			}
			// Solo files start a chunk and small files share one.
			for _, name := range []string{"c", "d"} {
				n, _ := x.Listing.Find(name)
				first, _ := x.Span(n.NarOffset, n.Size)
				if x.Chunks[first].NarOffset != n.NarOffset {
					t.Errorf("%s (%d bytes) does not start a chunk", name, n.Size)
				}
			}
			na, _ := x.Listing.Find("a")
			nb, _ := x.Listing.Find("b")
			fa, _ := x.Span(na.NarOffset, na.Size)
			fb, _ := x.Span(nb.NarOffset, nb.Size)
			if fa != fb {
				t.Errorf("small files a and b are in chunks %d and %d", fa, fb)
			}
		})
	}
}

func TestSpan(t *testing.T) {
	x := &Index{NarSize: 30, Chunks: []Chunk{{NarOffset: 0, NarLen: 10}, {NarOffset: 10, NarLen: 10}, {NarOffset: 20, NarLen: 10}}}
	for _, c := range []struct {
		off, n      int64
		first, last int
	}{{0, 1, 0, 1}, {9, 2, 0, 2}, {10, 10, 1, 2}, {25, 100, 2, 3}, {0, 30, 0, 3}, {30, 1, 0, 0}, {5, 0, 0, 0}, {-1, 5, 0, 0}} {
		f, l := x.Span(c.off, c.n)
		if f != c.first || l != c.last {
			t.Errorf("Span(%d, %d) = %d, %d, want %d, %d", c.off, c.n, f, l, c.first, c.last)
		}
	}
}

func TestTamperedChunk(t *testing.T) {
	b := build(t, "zstd")
	x, _ := Decode(b.index)
	c := x.Chunks[1]
	// Valid compression, wrong bytes.
	wrong := bytes.Clone(b.nar[c.NarOffset:c.NarEnd()])
	wrong[len(wrong)/2] ^= 1
	enc, _ := zstd.NewWriter(nil)
	stored := enc.EncodeAll(wrong, nil)
	c.FileLen = int64(len(stored))
	if _, err := x.DecodeChunk(nil, c, stored); !errors.Is(err, ErrChunk) {
		t.Fatalf("tampered chunk: %v, want ErrChunk", err)
	}
	// A frame that decodes to more than the chunk (a bomb) stops early.
	big := enc.EncodeAll(make([]byte, 8<<20), nil)
	c.FileLen = int64(len(big))
	if _, err := x.DecodeChunk(nil, c, big); !errors.Is(err, ErrChunk) {
		t.Fatalf("oversized chunk: %v", err)
	}
}

func TestSignature(t *testing.T) {
	b := build(t, "none")
	pub := b.key.Public()
	if _, err := Verify(b.ni, b.index, []narinfo.PublicKey{pub}); err != nil {
		t.Fatal(err)
	}
	// A changed index no longer matches its signature.
	changed := bytes.Clone(b.index)
	changed[len(changed)-1] ^= 1
	if _, err := Verify(b.ni, changed, []narinfo.PublicKey{pub}); !errors.Is(err, narinfo.ErrUntrusted) {
		t.Fatalf("changed index: %v", err)
	}
	// Signed by an untrusted key.
	_, other, _ := ed25519.GenerateKey(nil)
	if _, err := Verify(b.ni, b.index, []narinfo.PublicKey{{Name: "test-1", Key: other.Public().(ed25519.PublicKey)}}); !errors.Is(err, narinfo.ErrUntrusted) {
		t.Fatalf("untrusted key: %v", err)
	}
	// The signature is bound to the NarHash: the same index under a
	// narinfo of another NAR does not verify.
	ni2 := *b.ni
	ni2.NarHash = storepath.Hash{Algo: "sha256", Digest: make([]byte, 32)}
	if _, err := Verify(&ni2, b.index, []narinfo.PublicKey{pub}); !errors.Is(err, narinfo.ErrUntrusted) {
		t.Fatalf("other NarHash: %v", err)
	}
	// An index signature is no narinfo signature, and the reverse.
	ni3 := *b.ni
	ni3.Sigs = ni3.GetAll(KeySig)
	if _, err := ni3.Verify([]narinfo.PublicKey{pub}); !errors.Is(err, narinfo.ErrUntrusted) {
		t.Fatalf("index signature accepted as a narinfo signature: %v", err)
	}
	sig, _ := b.key.Sign(b.ni)
	ni4 := *b.ni
	ni4.Set(KeySig, sig)
	if _, err := Verify(&ni4, b.index, []narinfo.PublicKey{pub}); !errors.Is(err, narinfo.ErrUntrusted) {
		t.Fatalf("narinfo signature accepted as an index signature: %v", err)
	}
}

func TestMatches(t *testing.T) {
	b := build(t, "zstd")
	x, _ := Decode(b.index)
	for name, mod := range map[string]func(*narinfo.NarInfo){
		"other path":        func(n *narinfo.NarInfo) { n.StorePath.Name = "other" },
		"other NarHash":     func(n *narinfo.NarInfo) { n.NarHash = storepath.Hash{Algo: "sha256", Digest: make([]byte, 32)} },
		"other NarSize":     func(n *narinfo.NarInfo) { n.NarSize++ },
		"other URL":         func(n *narinfo.NarInfo) { n.URL = "nar/y.nar" },
		"other compression": func(n *narinfo.NarInfo) { n.Compression = "xz" },
		"other FileSize":    func(n *narinfo.NarInfo) { n.FileSize++ },
		"other FileHash": func(n *narinfo.NarInfo) {
			h := storepath.Hash{Algo: "sha256", Digest: make([]byte, 32)}
			n.FileHash = &h
		},
	} {
		ni := *b.ni
		mod(&ni)
		if err := x.Matches(&ni); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Matches = %v", name, err)
		}
	}
}

// reencode rewrites the decoded text of an index through edit and
// compresses it again.
func reencode(t *testing.T, object []byte, edit func(string) string) []byte {
	t.Helper()
	d, _ := zstd.NewReader(nil)
	text, err := d.DecodeAll(object, nil)
	if err != nil {
		t.Fatal(err)
	}
	e, _ := zstd.NewWriter(nil)
	return e.EncodeAll([]byte(edit(string(text))), nil)
}

func TestDecodeRejects(t *testing.T) {
	b := build(t, "none")
	x, _ := Decode(b.index)
	c0, c1 := x.Chunks[0], x.Chunks[1]
	line := func(c Chunk) string {
		return strings.Join([]string{itoa(c.NarOffset), itoa(c.NarLen), itoa(c.FileOffset), itoa(c.FileLen), hexs(c.SHA256)}, " ")
	}
	for name, edit := range map[string]func(string) string{
		"gap": func(s string) string {
			c := c1
			c.NarOffset++
			c.FileOffset++
			return strings.Replace(s, line(c1), line(c), 1)
		},
		"overlap": func(s string) string {
			c := c1
			c.NarOffset--
			c.FileOffset--
			return strings.Replace(s, line(c1), line(c), 1)
		},
		"short": func(s string) string {
			c := c0
			c.NarLen--
			c.FileLen--
			return strings.Replace(s, line(c0), line(c), 1)
		},
		"version":          func(s string) string { return strings.Replace(s, "narfs-index 1", "narfs-index 2", 1) },
		"compression":      func(s string) string { return strings.Replace(s, "Compression: none", "Compression: xz", 1) },
		"chunk count":      func(s string) string { return strings.Replace(s, "Chunks: ", "Chunks: 9", 1) },
		"huge chunk count": func(s string) string { return strings.Replace(s, "Chunks: ", "Chunks: 99999999999", 1) },
		"listing length":   func(s string) string { return strings.Replace(s, "Listing: ", "Listing: 1", 1) },
		"negative":         func(s string) string { return strings.Replace(s, "NarSize: ", "NarSize: -", 1) },
		"no narOffset":     func(s string) string { return strings.Replace(s, `"narOffset":`, `"narOffsex":`, 1) },
	} {
		if _, err := Decode(reencode(t, b.index, edit)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Decode = %v, want ErrInvalid", name, err)
		}
	}
	if _, err := Decode([]byte("not zstd")); !errors.Is(err, ErrInvalid) {
		t.Errorf("garbage: %v", err)
	}
}

func itoa(v int64) string { return formatInt(v) }

func TestDecodeRejectsBloatedChunk(t *testing.T) {
	b := build(t, "zstd")
	x, _ := Decode(b.index)
	c := x.Chunks[len(x.Chunks)-1]
	line := strings.Join([]string{itoa(c.NarOffset), itoa(c.NarLen), itoa(c.FileOffset), itoa(c.FileLen), hexs(c.SHA256)}, " ")
	big := c
	big.FileLen = maxStored(c.NarLen) + 1
	bloated := strings.Join([]string{itoa(big.NarOffset), itoa(big.NarLen), itoa(big.FileOffset), itoa(big.FileLen), hexs(big.SHA256)}, " ")
	edit := func(s string) string {
		s = strings.Replace(s, line, bloated, 1)
		return strings.Replace(s, "FileSize: "+itoa(x.FileSize), "FileSize: "+itoa(x.FileSize-c.FileLen+big.FileLen), 1)
	}
	if _, err := Decode(reencode(t, b.index, edit)); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "out of range") {
		t.Fatalf("bloated chunk: %v", err)
	}
}

// An index object of several zstd frames decodes like one: the first
// frame's declared size is only the decode's first guess.
func TestDecodeSeveralFrames(t *testing.T) {
	b := build(t, "zstd")
	d, _ := zstd.NewReader(nil)
	text, err := d.DecodeAll(b.index, nil)
	if err != nil {
		t.Fatal(err)
	}
	e, _ := zstd.NewWriter(nil)
	half := len(text) / 2
	object := e.EncodeAll(text[:half], nil)
	object = e.EncodeAll(text[half:], object)
	var h zstd.Header
	if err := h.Decode(object); err != nil || !h.HasFCS || h.FrameContentSize != uint64(half) {
		t.Fatalf("first frame header: %+v %v, want a declared size of %d", h, err, half)
	}
	x, err := Decode(object)
	if err != nil {
		t.Fatal(err)
	}
	want, err := Decode(b.index)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(x, want) {
		t.Error("two frames decode to another index than one")
	}
}
