package nar

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
)

// readAll parses a whole NAR, returning its headers and file contents.
func readAll(data []byte) ([]*Header, map[string][]byte, error) {
	nr := NewReader(bytes.NewReader(data))
	var hs []*Header
	contents := map[string][]byte{}
	for {
		h, err := nr.Next()
		if err == io.EOF {
			return hs, contents, nil
		}
		if err != nil {
			return hs, contents, err
		}
		hs = append(hs, h)
		if h.Type == TypeRegular {
			b, err := io.ReadAll(nr)
			if err != nil {
				return hs, contents, err
			}
			contents[h.Path] = b
		}
	}
}

func TestReaderMatchesTreeOnDisk(t *testing.T) {
	for _, p := range fixturePaths(t) {
		if p.Kind != "ca" {
			continue
		}
		t.Run(p.Name(), func(t *testing.T) {
			data := decompressedNAR(t, filepath.Join(fixtureDir, "cache-none"), filepath.Join(fixtureDir, "cache-none", p.Hash()+".narinfo"))
			ls, err := os.ReadFile(filepath.Join(fixtureDir, "cache-none", p.Hash()+".ls"))
			if err != nil {
				t.Fatal(err)
			}
			listing, err := DecodeListing(ls)
			if err != nil {
				t.Fatal(err)
			}
			hs, contents, err := readAll(data)
			if err != nil {
				t.Fatal(err)
			}
			root := filepath.Join(treeDir, p.Name())
			seen := map[string]bool{}
			for _, h := range hs {
				seen[h.Path] = true
				disk := filepath.Join(root, filepath.FromSlash(h.Path))
				fi, err := os.Lstat(disk)
				if err != nil {
					t.Fatalf("%q: %v", h.Path, err)
				}
				switch h.Type {
				case TypeRegular:
					want, err := os.ReadFile(disk)
					if err != nil {
						t.Fatal(err)
					}
					if !fi.Mode().IsRegular() || h.Size != fi.Size() || h.Executable != (fi.Mode()&0o100 != 0) || !bytes.Equal(contents[h.Path], want) {
						t.Errorf("%q: header %+v (%d content bytes) does not match disk mode %v size %d", h.Path, h, len(contents[h.Path]), fi.Mode(), fi.Size())
					}
					n, err := listing.Find(h.Path)
					if err != nil || n.NarOffset != h.Offset {
						t.Errorf("%q: Offset %d, .ls node %+v (%v)", h.Path, h.Offset, n, err)
					}
				case TypeSymlink:
					target, err := os.Readlink(disk)
					if err != nil || target != h.LinkTarget {
						t.Errorf("%q: target %q, disk %q (%v)", h.Path, h.LinkTarget, target, err)
					}
				case TypeDirectory:
					if !fi.IsDir() {
						t.Errorf("%q: directory in NAR, %v on disk", h.Path, fi.Mode())
					}
				}
			}
			err = filepath.Walk(root, func(path string, _ os.FileInfo, err error) error {
				rel, _ := filepath.Rel(root, path)
				if rel == "." {
					rel = ""
				}
				if !seen[filepath.ToSlash(rel)] {
					t.Errorf("%q on disk but not in the NAR", rel)
				}
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestReaderPartialReads checks that Next skips unread contents and that
// reads never cross a file boundary.
func TestReaderPartialReads(t *testing.T) {
	data := mustRead(t, filepath.Join(fixtureDir, "dumps", basenameOf(t, "tree-small")+".nar"))
	_, full, err := readAll(data)
	if err != nil {
		t.Fatal(err)
	}
	nr := NewReader(bytes.NewReader(data))
	for i := 0; ; i++ {
		h, err := nr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Type != TypeRegular || i%2 == 0 {
			continue
		}
		buf := make([]byte, 3)
		n, _ := io.ReadFull(nr, buf)
		if !bytes.Equal(buf[:n], full[h.Path][:n]) {
			t.Errorf("%q: first bytes %q, want prefix of %q", h.Path, buf[:n], full[h.Path])
		}
	}
}

func basenameOf(t testing.TB, name string) string {
	for _, p := range fixturePaths(t) {
		if p.Name() == name {
			return p.Base
		}
	}
	t.Fatalf("no store path named %q", name)
	return ""
}

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestReaderTruncated cuts small NARs at every byte.
func TestReaderTruncated(t *testing.T) {
	for _, name := range []string{"single-exec", "single-link", "tree-small"} {
		data := mustRead(t, filepath.Join(fixtureDir, "dumps", basenameOf(t, name)+".nar"))
		for n := 0; n < len(data); n++ {
			_, _, err := readAll(data[:n])
			if !errors.Is(err, ErrInvalid) || !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("%s cut at %d of %d: err = %v, want ErrInvalid and io.ErrUnexpectedEOF", name, n, len(data), err)
			}
		}
	}
}

// raw builds NAR bytes: a string is a padded token, a uint64 a bare length,
// a []byte is copied verbatim.
func raw(parts ...any) []byte {
	var b []byte
	for _, p := range parts {
		switch v := p.(type) {
		case string:
			b = binary.LittleEndian.AppendUint64(b, uint64(len(v)))
			b = append(b, v...)
			b = append(b, make([]byte, padding(uint64(len(v))))...)
		case uint64:
			b = binary.LittleEndian.AppendUint64(b, v)
		case []byte:
			b = append(b, v...)
		default:
			panic("raw: bad part")
		}
	}
	return b
}

// dirNAR returns a root directory with one regular file entry per name.
func dirNAR(names ...string) []byte {
	parts := []any{"nix-archive-1", "(", "type", "directory"}
	for _, n := range names {
		parts = append(parts, "entry", "(", "name", n, "node", "(", "type", "regular", "contents", "x", ")", ")")
	}
	return raw(append(parts, ")")...)
}

func deepNAR(depth int) []byte {
	parts := []any{"nix-archive-1"}
	for range depth {
		parts = append(parts, "(", "type", "directory", "entry", "(", "name", "d", "node")
	}
	parts = append(parts, "(", "type", "symlink", "target", "t", ")")
	for range depth {
		parts = append(parts, ")", ")")
	}
	return raw(parts...)
}

func TestReaderValidInputs(t *testing.T) {
	for name, data := range map[string][]byte{
		"sorted":        dirNAR("A", "B", "a", "a-b", "a.b", "a_b", "b", "\xff"),
		"depth 63":      deepNAR(MaxDepth - 1),
		"255-byte name": dirNAR(strings.Repeat("n", 255)),
		"4095 target":   raw("nix-archive-1", "(", "type", "symlink", "target", strings.Repeat("t", 4095), ")"),
		"empty dir":     raw("nix-archive-1", "(", "type", "directory", ")"),
	} {
		if _, _, err := readAll(data); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestReaderRejectsMalformed(t *testing.T) {
	badPadding := raw("nix-archive-1", "(", "type", "regular", "contents", "x", ")")
	badPadding[len(badPadding)-16-1] = 1 // last padding byte of the contents "x"
	badTagPadding := raw("nix-archive-1", "(", "type", "regular", "contents", "x", ")")
	badTagPadding[24+16+8+4] = 'z' // padding of "type"
	for name, data := range map[string][]byte{
		"wrong magic":            raw("nix-archive-2", "(", "type", "regular", "contents", "", ")"),
		"empty input":            {},
		"huge magic length":      raw(uint64(1 << 62)),
		"unknown type":           raw("nix-archive-1", "(", "type", "fifo", ")"),
		"no open paren":          raw("nix-archive-1", "type", "regular"),
		"executable marker":      raw("nix-archive-1", "(", "type", "regular", "executable", "x", "contents", "", ")"),
		"executable after":       raw("nix-archive-1", "(", "type", "regular", "contents", "", "executable", "", ")"),
		"second type":            raw("nix-archive-1", "(", "type", "regular", "type", "regular", "contents", "", ")"),
		"entry in file":          raw("nix-archive-1", "(", "type", "regular", "entry", ")"),
		"unsorted":               dirNAR("b", "a"),
		"upper after lower":      dirNAR("a", "B"),
		"duplicate":              dirNAR("a", "a"),
		"dot":                    dirNAR("."),
		"dotdot":                 dirNAR(".."),
		"slash":                  dirNAR("a/b"),
		"NUL":                    dirNAR("a\x00b"),
		"empty name":             dirNAR(""),
		"256-byte name":          dirNAR(strings.Repeat("n", 256)),
		"too deep":               deepNAR(MaxDepth),
		"empty target":           raw("nix-archive-1", "(", "type", "symlink", "target", "", ")"),
		"NUL target":             raw("nix-archive-1", "(", "type", "symlink", "target", "a\x00", ")"),
		"4096 target":            raw("nix-archive-1", "(", "type", "symlink", "target", strings.Repeat("t", 4096), ")"),
		"size beyond stream":     raw("nix-archive-1", "(", "type", "regular", "contents", uint64(1<<40), []byte("abc")),
		"size beyond int64":      raw("nix-archive-1", "(", "type", "regular", "contents", uint64(1<<63), []byte("abc")),
		"huge tag":               raw("nix-archive-1", uint64(1<<63)),
		"long tag":               raw("nix-archive-1", strings.Repeat("(", 33)),
		"non-zero padding":       badPadding,
		"non-zero tag padding":   badTagPadding,
		"unclosed directory":     raw("nix-archive-1", "(", "type", "directory"),
		"junk in directory":      raw("nix-archive-1", "(", "type", "directory", "junk", ")"),
		"entry without node":     raw("nix-archive-1", "(", "type", "directory", "entry", "(", "name", "a", ")", ")"),
		"entry not closed":       raw("nix-archive-1", "(", "type", "directory", "entry", "(", "name", "a", "node", "(", "type", "symlink", "target", "t", ")", "entry"),
		"symlink extra field":    raw("nix-archive-1", "(", "type", "symlink", "target", "t", "target", "u", ")"),
		"contents then junk":     raw("nix-archive-1", "(", "type", "regular", "contents", "", "junk"),
		"magic without padding":  append(binary.LittleEndian.AppendUint64(nil, 13), "nix-archive-1"...),
		"truncated length field": raw("nix-archive-1")[:20],
		"trailing data":          append(dirNAR("a"), "garbage"...),
		"trailing padding":       append(dirNAR("a"), make([]byte, 8)...),
	} {
		_, _, err := readAll(data)
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
}

// TestReaderSourceError checks that transport errors are not reported as
// an invalid archive.
func TestReaderSourceError(t *testing.T) {
	boom := errors.New("boom")
	data := dirNAR("a")
	nr := NewReader(io.MultiReader(bytes.NewReader(data[:40]), errReader{boom}))
	var err error
	for err == nil {
		_, err = nr.Next()
	}
	if !errors.Is(err, boom) || errors.Is(err, ErrInvalid) {
		t.Fatalf("err = %v, want boom and not ErrInvalid", err)
	}
	if _, err2 := nr.Next(); err2 != err {
		t.Fatalf("error not sticky: %v then %v", err, err2)
	}
}

type errReader struct{ err error }

// TestReaderRejectsTrailingData appends bytes to every fixture NAR: Nix
// rejects such a NAR, and a caller cannot tell once the Reader's buffer has
// swallowed them, so Next must.
func TestReaderRejectsTrailingData(t *testing.T) {
	nars, err := filepath.Glob(filepath.Join(fixtureDir, "cache-none", "nar", "*.nar"))
	if err != nil || len(nars) < 6 {
		t.Fatalf("fixture NARs: %v %v", nars, err)
	}
	for _, p := range nars {
		data := mustRead(t, p)
		readers := map[string]func([]byte) io.Reader{
			"whole":    func(b []byte) io.Reader { return bytes.NewReader(b) },
			"data+EOF": func(b []byte) io.Reader { return iotest.DataErrReader(bytes.NewReader(b)) },
		}
		if len(data) < 64<<10 { // one-byte reads of the 11 MB tree take too long under -race
			readers["one-byte"] = func(b []byte) io.Reader { return iotest.OneByteReader(bytes.NewReader(b)) }
		}
		for rname, mk := range readers {
			if _, err := readAllFrom(mk(data)); err != nil {
				t.Errorf("%s with %s reads: %v", filepath.Base(p), rname, err)
			}
			for _, n := range []int{1, 7, 8, 4096, 70000} {
				for _, fill := range []byte{0, 'x'} {
					extra := bytes.Repeat([]byte{fill}, n)
					_, err := readAllFrom(mk(append(data[:len(data):len(data)], extra...)))
					if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "trailing data") {
						t.Errorf("%s + %d bytes %q with %s reads: err = %v, want trailing data (ErrInvalid)", filepath.Base(p), n, fill, rname, err)
					}
				}
			}
		}
	}
}

// readAllFrom reads every node of a NAR and the contents of its files, and
// checks that io.EOF is sticky once returned.
func readAllFrom(src io.Reader) (int, error) {
	nr := NewReader(src)
	nodes := 0
	for {
		h, err := nr.Next()
		if err == io.EOF {
			if _, err := nr.Next(); err != io.EOF {
				return nodes, fmt.Errorf("Next after io.EOF: %v", err)
			}
			return nodes, nil
		}
		if err != nil {
			return nodes, err
		}
		nodes++
		if h.Type == TypeRegular {
			if _, err := io.Copy(io.Discard, nr); err != nil {
				return nodes, err
			}
		}
	}
}

// A transport failure while looking for trailing data is the transport's
// fault, not the archive's; a source that stalls a little and then ends is
// fine.
func TestReaderEndCheckSourceError(t *testing.T) {
	boom := errors.New("boom")
	data := dirNAR("a")
	_, err := readAllFrom(io.MultiReader(bytes.NewReader(data), errReader{boom}))
	if !errors.Is(err, boom) || errors.Is(err, ErrInvalid) {
		t.Errorf("err = %v, want boom and not ErrInvalid", err)
	}
	_, err = readAllFrom(io.MultiReader(bytes.NewReader(data), &emptyReads{n: 5}))
	if err != nil {
		t.Errorf("source with empty reads before EOF: %v", err)
	}
}

// emptyReads returns (0, nil) n times, then io.EOF.
type emptyReads struct{ n int }

func (e *emptyReads) Read([]byte) (int, error) {
	if e.n == 0 {
		return 0, io.EOF
	}
	e.n--
	return 0, nil
}

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// rewrite re-encodes the archive the Reader accepts with the Writer and
// returns the bytes plus the length of the input the Reader consumed.
func rewrite(data []byte) ([]byte, int64, error) {
	nr := NewReader(bytes.NewReader(data))
	var out bytes.Buffer
	w := NewWriter(&out)
	var dirs []string
	for {
		h, err := nr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, 0, err
		}
		if h.Path != "" {
			parent, name := "", h.Path
			if i := strings.LastIndexByte(h.Path, '/'); i >= 0 {
				parent, name = h.Path[:i], h.Path[i+1:]
			}
			for dirs[len(dirs)-1] != parent {
				dirs = dirs[:len(dirs)-1]
				if err := w.EndDirectory(); err != nil {
					return nil, 0, err
				}
			}
			if err := w.Entry(name); err != nil {
				return nil, 0, err
			}
		}
		switch h.Type {
		case TypeRegular:
			err = w.File(h.Executable, h.Size, nr)
		case TypeSymlink:
			err = w.Symlink(h.LinkTarget)
		case TypeDirectory:
			dirs = append(dirs, h.Path)
			err = w.Directory()
		}
		if err != nil {
			return nil, 0, err
		}
	}
	for range dirs {
		if err := w.EndDirectory(); err != nil {
			return nil, 0, err
		}
	}
	if err := w.Close(); err != nil {
		return nil, 0, err
	}
	return out.Bytes(), nr.off, nil
}

func smallNARs(t testing.TB) map[string][]byte {
	m := map[string][]byte{}
	files, _ := filepath.Glob(filepath.Join(fixtureDir, "dumps", "*.nar"))
	for _, f := range files {
		m[filepath.Base(f)] = mustRead(t, f)
	}
	if len(m) == 0 {
		t.Fatal("no dumps")
	}
	return m
}

func TestWriterReproducesFixtures(t *testing.T) {
	for name, data := range smallNARs(t) {
		out, n, err := rewrite(data)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if n != int64(len(data)) || !bytes.Equal(out, data) {
			t.Errorf("%s: rewrite differs (%d bytes, consumed %d of %d)", name, len(out), n, len(data))
		}
	}
}

func TestWriterMisuse(t *testing.T) {
	for name, f := range map[string]func(w *Writer) error{
		"close empty":        func(w *Writer) error { return w.Close() },
		"entry at root":      func(w *Writer) error { return w.Entry("a") },
		"node without entry": func(w *Writer) error { w.Directory(); return w.Symlink("t") },
		"two roots":          func(w *Writer) error { w.Symlink("t"); return w.Symlink("t") },
		"short contents":     func(w *Writer) error { return w.File(false, 5, strings.NewReader("abc")) },
		"unclosed directory": func(w *Writer) error { w.Directory(); return w.Close() },
		"end inside entry":   func(w *Writer) error { w.Directory(); w.Entry("a"); return w.EndDirectory() },
		"end without dir":    func(w *Writer) error { w.Symlink("t"); return w.EndDirectory() },
	} {
		if err := f(NewWriter(io.Discard)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func FuzzReader(f *testing.F) {
	for _, data := range smallNARs(f) {
		f.Add(data)
	}
	f.Add(dirNAR("a", "b"))
	f.Add(deepNAR(3))
	f.Fuzz(func(t *testing.T, data []byte) {
		out, n, err := rewrite(data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error not wrapping ErrInvalid: %v", err)
			}
			return
		}
		// An accepted archive has nothing after it and exactly one
		// encoding: the Writer must reproduce it.
		if n != int64(len(data)) {
			t.Fatalf("accepted NAR of %d bytes followed by %d more", n, int64(len(data))-n)
		}
		if !bytes.Equal(out, data) {
			t.Fatalf("accepted NAR is not canonical: rewrite gives %d bytes, input %d", len(out), n)
		}
	})
}

func BenchmarkReader(b *testing.B) {
	// 16 files of 4 MiB: the cost is dominated by contents, as in real NARs.
	var buf bytes.Buffer
	w := NewWriter(&buf)
	w.Directory()
	content := bytes.Repeat([]byte("0123456789abcdef"), 4<<20/16)
	for i := range 16 {
		w.Entry(string(rune('a' + i)))
		w.File(false, int64(len(content)), bytes.NewReader(content))
	}
	w.EndDirectory()
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	data := buf.Bytes()
	p := make([]byte, 256<<10)
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for range b.N {
		nr := NewReader(bytes.NewReader(data))
		for {
			_, err := nr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			for {
				if _, err := nr.Read(p); err == io.EOF {
					break
				} else if err != nil {
					b.Fatal(err)
				}
			}
		}
	}
}
