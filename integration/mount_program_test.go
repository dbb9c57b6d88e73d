package integration

import (
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestMountIndexedProgramWhole: in an indexed path too large to be
// fetched whole, a program (an executable file) larger than the
// whole-file limit of other files is fetched whole from its first read,
// as the pages of a program fault in out of order; a data file of the
// same size gives a random read about its chunk.
func TestMountIndexedProgramWhole(t *testing.T) {
	c := nixClosure(t)
	work, cache := t.TempDir(), t.TempDir()
	d := filepath.Join(work, "narfs-program")
	os.MkdirAll(d, 0o755)
	const size = 24 << 20 // above 16 MiB (other files), below 64 MiB (programs)
	prog, data := make([]byte, size), make([]byte, size)
	rand.Read(prog)
	rand.Read(data)
	os.WriteFile(filepath.Join(d, "prog"), prog, 0o755)
	os.WriteFile(filepath.Join(d, "data"), data, 0o644)
	p, err := sh(work, "nix-store", "--add", d)
	if err != nil {
		t.Fatal(err)
	}
	base := filepath.Base(p)
	if out, errOut, code := narfs(t, nil, "push", "--secret-key", c.secretKey, "file://"+cache, p); code != 0 {
		t.Fatalf("narfs push: exit %d\n%s%s", code, out, errOut)
	}
	h := serveHTTP(t, cache)
	m := mountNarfs(t, h.URL, nil, "--trusted-public-keys", c.publicKey)

	// pread of one page in the middle of a file through the mount.
	page := func(name string, want []byte) {
		t.Helper()
		f, err := os.Open(filepath.Join(m.Dir, base, name))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		got := make([]byte, 4096)
		if _, err := f.ReadAt(got, size/2); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !bytes.Equal(got, want[size/2:size/2+4096]) {
			t.Fatalf("%s: wrong bytes", name)
		}
	}
	page("data", data)
	// Nothing else is asked for: what the data read fetched is done.
	time.Sleep(200 * time.Millisecond)
	dataBytes := h.narBytes()
	if dataBytes > 8<<20 {
		t.Errorf("a random read of a %d-byte data file fetched %d bytes", size, dataBytes)
	}
	page("prog", prog)
	deadline := time.Now().Add(20 * time.Second)
	for h.narBytes()-dataBytes < size && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := h.narBytes() - dataBytes; got < size {
		t.Fatalf("a read of a %d-byte program fetched %d bytes, want it whole", size, got)
	}
	// All of it verified and served with no further request.
	n := h.narGets()
	if got := readFile(t, filepath.Join(m.Dir, base, "prog")); !bytes.Equal(got, prog) {
		t.Fatal("prog: wrong contents")
	}
	if got := h.narGets(); got != n {
		t.Errorf("reading the fetched program made %d more requests", got-n)
	}
}
