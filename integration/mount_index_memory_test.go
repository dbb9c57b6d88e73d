package integration

import (
	"bytes"
	"cmp"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/narfs/narfs/remote/chunkindex"
	"github.com/narfs/narfs/remote/narinfo"
)

// TestMountHostileIndexMemory: a key-less writer turns five indexed paths'
// indexes into 64 MiB of junk (layout 1: NarfsIndexSize says 64 MiB;
// layout 2: the index object is the junk) and replaces a chunk of five
// others by a small zstd frame of 100 MiB of zeros. Reading all ten at
// once through the mount gives the junk-indexed paths' true bytes (read
// the stock way) and EIO for the bombs, and the daemon's peak memory
// (VmHWM) is logged (issue 19, classes 4 and 5).
//
// NARFS_VMHWM_BIN runs another narfs binary instead (a build without
// -race, or an older narfs, for the numbers); NARFS_VMHWM_LAYOUT=1 writes
// the junk the layout-1 way, which older narfs reads; NARFS_VMHWM_CLASS=4
// or 5 reads only the junk-indexed paths or only the bombs.
func TestMountHostileIndexMemory(t *testing.T) {
	c := nixClosure(t)
	bin := narfsBin
	if b := os.Getenv("NARFS_VMHWM_BIN"); b != "" {
		bin = b
	}
	layout1 := os.Getenv("NARFS_VMHWM_LAYOUT") == "1"
	work, cache := t.TempDir(), t.TempDir()
	var bases []string
	for i := range 10 {
		d := filepath.Join(work, fmt.Sprintf("hostile-%d", i))
		os.MkdirAll(d, 0o755)
		big := make([]byte, 3<<20)
		rand.Read(big)
		os.WriteFile(filepath.Join(d, "big"), big, 0o644)
		os.WriteFile(filepath.Join(d, "small"), []byte("small\n"), 0o644)
		p, err := sh(work, "nix-store", "--add", d)
		if err != nil {
			t.Fatal(err)
		}
		bases = append(bases, filepath.Base(p))
	}
	args := []string{"push", "--secret-key", c.secretKey, "file://" + cache}
	for _, b := range bases {
		args = append(args, "/nix/store/"+b)
	}
	if out, errOut, code := narfs(t, nil, args...); code != 0 {
		t.Fatalf("narfs push: exit %d\n%s%s", code, out, errOut)
	}
	skData, err := os.ReadFile(c.secretKey)
	if err != nil {
		t.Fatal(err)
	}
	sk, err := narinfo.ParseSecretKey(strings.TrimSpace(string(skData)))
	if err != nil {
		t.Fatal(err)
	}

	// Class 4: junk where the index is.
	junk := make([]byte, 64<<20)
	rand.Read(junk)
	junkPath := filepath.Join(cache, "index", "junk.nidx")
	if err := os.WriteFile(junkPath, junk, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, b := range bases[:5] {
		alias := filepath.Join(cache, chunkindex.AliasKey(hashOf(b)))
		if layout1 {
			o, err := chunkindex.Split(readFile(t, alias))
			if err != nil {
				t.Fatal(err)
			}
			ni := readNarinfo(t, filepath.Join(cache, hashOf(b)+".narinfo"))
			ni.Set(chunkindex.KeyURL, "index/junk.nidx")
			ni.Set(chunkindex.KeySize, strconv.Itoa(len(junk)))
			ni.Set(chunkindex.KeySig, chunkindex.Sign(sk, ni, o.Payload))
			os.WriteFile(filepath.Join(cache, hashOf(b)+".narinfo"), ni.Marshal(), 0o644)
		}
		os.Remove(alias)
		if err := os.Link(junkPath, alias); err != nil {
			t.Fatal(err)
		}
	}

	// Class 5: a chunk of big replaced by a bomb padded to the chunk's
	// stored length with a skippable frame (the object keeps its size).
	var zeros bytes.Buffer
	enc, _ := zstd.NewWriter(&zeros, zstd.WithEncoderLevel(zstd.SpeedFastest))
	enc.Write(make([]byte, 100<<20))
	enc.Close()
	bomb := zeros.Bytes()
	for _, b := range bases[5:] {
		alias := filepath.Join(cache, chunkindex.AliasKey(hashOf(b)))
		x, err := chunkindex.Decode(readFile(t, alias))
		if err != nil {
			t.Fatal(err)
		}
		if layout1 {
			o, _ := chunkindex.Split(readFile(t, alias))
			ni := readNarinfo(t, filepath.Join(cache, hashOf(b)+".narinfo"))
			os.WriteFile(filepath.Join(cache, "index", hashOf(b)+"-l1.nidx"), o.Payload, 0o644)
			ni.Set(chunkindex.KeyURL, "index/"+hashOf(b)+"-l1.nidx")
			ni.Set(chunkindex.KeySize, strconv.Itoa(len(o.Payload)))
			ni.Set(chunkindex.KeySig, chunkindex.Sign(sk, ni, o.Payload))
			os.WriteFile(filepath.Join(cache, hashOf(b)+".narinfo"), ni.Marshal(), 0o644)
			os.WriteFile(alias, o.Payload, 0o644)
		}
		n, err := x.Listing.Find("big")
		if err != nil {
			t.Fatal(err)
		}
		first, _ := x.Span(n.NarOffset, n.Size)
		ch := x.Chunks[first]
		if ch.FileLen < int64(len(bomb))+8 {
			t.Fatalf("chunk of %d stored bytes cannot hold a bomb of %d", ch.FileLen, len(bomb))
		}
		pad := make([]byte, 8, ch.FileLen-int64(len(bomb)))
		binary.LittleEndian.PutUint32(pad, 0x184D2A50)
		binary.LittleEndian.PutUint32(pad[4:], uint32(cap(pad)-8))
		pad = pad[:cap(pad)]
		obj := filepath.Join(cache, x.URL)
		data := readFile(t, obj)
		copy(data[ch.FileOffset:], append(append([]byte{}, bomb...), pad...))
		os.WriteFile(obj, data, 0o644)
	}

	h := serveHTTP(t, cache)
	m := startMount(t, bin, h.URL, nil, "--cache-dir", t.TempDir(), "--trusted-public-keys", c.publicKey)
	t.Cleanup(func() {
		m.stop(t)
		if t.Failed() {
			t.Logf("narfs log:\n%s", m.Log())
		}
	})
	pid := m.cmd.Process.Pid
	t.Logf("VmHWM after mount: %s", vmHWM(t, pid))
	var wg sync.WaitGroup
	errs := make([]error, len(bases))
	class := os.Getenv("NARFS_VMHWM_CLASS") // "4" or "5": read only those
	for i, b := range bases {
		if (class == "4" && i >= 5) || (class == "5" && i < 5) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := exec.Command("cat", filepath.Join(m.Dir, b, "big")).Output()
			switch {
			case i < 5 && err != nil:
				errs[i] = fmt.Errorf("%s (junk index) unreadable: %v", b, err)
			case i < 5 && !bytes.Equal(got, readFile(t, filepath.Join("/nix/store", b, "big"))):
				errs[i] = fmt.Errorf("%s (junk index) read wrong bytes", b)
			case i >= 5 && err == nil:
				errs[i] = fmt.Errorf("%s (bomb) read without error", b)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	t.Logf("VmHWM after reading (classes %q, layout %d): %s", cmp.Or(class, "4 and 5"), map[bool]int{true: 1, false: 2}[layout1], vmHWM(t, pid))
}

// vmHWM is the peak resident set of process pid.
func vmHWM(t *testing.T, pid int) string {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}
