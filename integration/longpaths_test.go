package integration

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/remote/narinfo"
	"github.com/narfs/narfs/remote/storepath"
)

// Store paths of the long-path caches (hash parts of nix32 letters).
const (
	longBase    = "0123456789abcdfghijklmnpqrsvwxyz-long-paths"
	tooLongBase = "zyxwvsrqpnmlkjihgfdcba9876543210-name-too-long"
)

// longDepth directories of longName (200 bytes) make paths of more than
// 24×201 = 4824 bytes inside the store path: past PATH_MAX (4096), as no
// Nix can restore, with every name within NAME_MAX (255).
const longDepth = 24

func longName(i int) string {
	return strings.Repeat("d", 200-3) + string(rune('a'+i/26)) + string(rune('a'+i%26)) + "x"
}

// longNAR is a NAR whose deepest file and symlink lie more than PATH_MAX
// bytes below its root, with a 255-byte name (NAME_MAX) at the bottom.
func longNAR(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := nar.NewWriter(&buf)
	w.Directory()
	for i := range longDepth {
		w.Entry(longName(i))
		w.Directory()
	}
	w.Entry(strings.Repeat("f", 255))
	w.File(false, 5, strings.NewReader("deep\n"))
	w.Entry("link")
	w.Symlink(strings.Repeat("f", 255))
	for range longDepth {
		w.EndDirectory()
	}
	w.Entry("top.txt")
	w.File(false, 4, strings.NewReader("top\n"))
	w.EndDirectory()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// tooLongNAR is a directory with one entry whose name is 256 bytes, which
// no Linux file system holds and nar's reader refuses, as Nix does. The
// writer refuses it too, so the NAR is framed by hand.
func tooLongNAR() []byte {
	var b bytes.Buffer
	str := func(s string) {
		var n [8]byte
		binary.LittleEndian.PutUint64(n[:], uint64(len(s)))
		b.Write(n[:])
		b.WriteString(s)
		b.Write(make([]byte, (8-len(s)%8)%8))
	}
	for _, s := range []string{"nix-archive-1", "(", "type", "directory", "entry", "(", "name", strings.Repeat("n", 256),
		"node", "(", "type", "regular", "contents", "x", ")", ")", ")"} {
		str(s)
	}
	return b.Bytes()
}

// writeSignedNAR stores data as base's uncompressed NAR in the file://
// cache dir, with a narinfo signed by narfs-test-1 (nar/testdata/keys).
func writeSignedNAR(t *testing.T, dir, base string, data []byte) {
	t.Helper()
	sp, err := storepath.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	h := storepath.Hash{Algo: "sha256", Digest: sum[:]}
	url := "nar/" + storepath.EncodeNix32(sum[:]) + ".nar"
	ni := &narinfo.NarInfo{StorePath: sp, URL: url, Compression: "none", FileHash: &h, FileSize: int64(len(data)),
		NarHash: h, NarSize: int64(len(data))}
	skData, err := os.ReadFile("../nar/testdata/keys/narfs-test-1.sk")
	if err != nil {
		t.Fatal(err)
	}
	sk, err := narinfo.ParseSecretKey(strings.TrimSpace(string(skData)))
	if err != nil {
		t.Fatal(err)
	}
	sig, err := sk.Sign(ni)
	if err != nil {
		t.Fatal(err)
	}
	ni.Sigs = []string{sig}
	os.MkdirAll(filepath.Join(dir, "nar"), 0o755)
	for name, b := range map[string][]byte{
		"nix-cache-info":     []byte("StoreDir: /nix/store\n"),
		url:                  data,
		sp.Hash + ".narinfo": ni.Marshal(),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func testPublicKey(t *testing.T) string {
	t.Helper()
	pk, err := os.ReadFile("../nar/testdata/nix/public-key.txt")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(pk))
}

// TestLongPathsServed: a NAR whose paths exceed PATH_MAX (Nix cannot
// restore it) is served whole: `narfs ls -R` lists it, and through the
// real FUSE mount a walk by directory file descriptors (readdir, lookup,
// open, readlink) reaches and reads its deepest file; the kernel refuses
// only a whole path longer than PATH_MAX (ENAMETOOLONG, before narfs is
// asked), and narfs a name longer than NAME_MAX. A NAR with a 256-byte
// name is refused like any invalid NAR: ls fails, the mount answers EIO,
// and nothing crashes.
func TestLongPathsServed(t *testing.T) {
	requireE2E(t)
	dir := t.TempDir()
	data := longNAR(t)
	writeSignedNAR(t, dir, longBase, data)
	writeSignedNAR(t, dir, tooLongBase, tooLongNAR())
	url := "file://" + dir
	key := "--trusted-public-keys=" + testPublicKey(t)
	deepRel := ""
	for i := range longDepth {
		deepRel += longName(i) + "/"
	}
	deepFile := deepRel + strings.Repeat("f", 255)
	if len("/nix/store/"+longBase+"/"+deepFile) <= 4096 {
		t.Fatal("the deep path is not longer than PATH_MAX")
	}

	out, errOut, code := narfs(t, nil, "ls", "-R", key, "--cache-dir="+t.TempDir(), url, "/nix/store/"+longBase)
	if code != 0 {
		t.Fatalf("ls -R: exit %d: %s", code, errOut)
	}
	for _, want := range []string{"/nix/store/" + longBase + "/" + deepFile + "\n", "/nix/store/" + longBase + "/" + deepRel + "link\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("ls -R does not list the %d-byte path %s...", len(want), want[:80])
		}
	}
	_, errOut, code = narfs(t, nil, "ls", "-R", key, "--cache-dir="+t.TempDir(), url, "/nix/store/"+tooLongBase)
	if code != 1 || !strings.Contains(errOut, "at most 255") {
		t.Errorf("ls -R of a NAR with a 256-byte name: exit %d, %q; want 1 saying why", code, errOut)
	}

	m := mountNarfs(t, url, nil, key)
	// Walk down by directory file descriptors, as find(1) does: every
	// step is a lookup relative to the last directory.
	fd, err := syscall.Open(filepath.Join(m.Dir, longBase), syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := range longDepth {
		names := readdirFD(t, fd)
		if len(names) != 1+boolInt(i == 0) || names[0] != longName(i) {
			t.Fatalf("depth %d: readdir %q", i, names)
		}
		next, err := syscall.Openat(fd, longName(i), syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
		syscall.Close(fd)
		if err != nil {
			t.Fatalf("depth %d: openat: %v", i, err)
		}
		fd = next
	}
	if names := readdirFD(t, fd); len(names) != 2 || names[0] != strings.Repeat("f", 255) || names[1] != "link" {
		t.Errorf("deepest directory: %q", names)
	}
	ffd, err := syscall.Openat(fd, strings.Repeat("f", 255), syscall.O_RDONLY, 0)
	if err != nil {
		t.Fatalf("open the deepest file: %v", err)
	}
	f := os.NewFile(uintptr(ffd), "deep")
	got, err := io.ReadAll(f)
	f.Close()
	if err != nil || string(got) != "deep\n" {
		t.Errorf("deepest file: %q, %v", got, err)
	}
	buf := make([]byte, 512)
	if n, err := unix.Readlinkat(fd, "link", buf); err != nil || string(buf[:n]) != strings.Repeat("f", 255) {
		t.Errorf("readlinkat: %q, %v", buf[:n], err)
	}
	// The kernel passes FUSE names longer than NAME_MAX on (1024 bytes,
	// more on newer kernels): narfs answers what ext4 does.
	for _, n := range []int{256, 1024, 1025} {
		if _, err := syscall.Openat(fd, strings.Repeat("f", n), syscall.O_RDONLY, 0); !errors.Is(err, syscall.ENAMETOOLONG) {
			t.Errorf("lookup of a %d-byte name: %v, want ENAMETOOLONG", n, err)
		}
	}
	syscall.Close(fd)
	// The whole path is longer than PATH_MAX: the kernel's refusal.
	if _, err := os.Stat(filepath.Join(m.Dir, longBase, deepFile)); !errors.Is(err, syscall.ENAMETOOLONG) {
		t.Errorf("stat of the whole path: %v, want ENAMETOOLONG", err)
	}
	// find(1) walks it all from the store path.
	if out, err := bashC(t, "cd "+filepath.Join(m.Dir, longBase)+" && find . | wc -l"); err != nil || strings.TrimSpace(out) != itoa(int64(longDepth+4)) {
		t.Errorf("find: %q, %v; want %d entries", out, err, longDepth+4)
	}
	// The NAR with a 256-byte name: EIO, and the mount lives on.
	if _, err := os.ReadDir(filepath.Join(m.Dir, tooLongBase)); err == nil {
		t.Error("readdir of a NAR with a 256-byte name succeeded")
	} else if errno, ok := underlyingErrno(err); !ok || errno != syscall.EIO {
		t.Errorf("readdir of a NAR with a 256-byte name: %v, want EIO", err)
	}
	if got, err := os.ReadFile(filepath.Join(m.Dir, longBase, "top.txt")); err != nil || string(got) != "top\n" {
		t.Errorf("after it: top.txt %q, %v", got, err)
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// readdirFD lists a directory by its descriptor (a dup: the caller keeps
// fd), sorted.
func readdirFD(t *testing.T, fd int) []string {
	t.Helper()
	d, err := syscall.Dup(fd)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(d), "dir")
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		t.Fatalf("readdir: %v", err)
	}
	slices.Sort(names)
	return names
}
