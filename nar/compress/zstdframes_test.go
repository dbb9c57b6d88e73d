package compress

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

// zstdReference decodes in with the single-threaded streaming decoder
// NewReader used before frames were decoded in parallel.
func zstdReference(in []byte) ([]byte, error) {
	d, err := newZstdStream(struct{ io.Reader }{bytes.NewReader(in)})
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return io.ReadAll(d)
}

// zstdParallel decodes in through newZstdFrames with the given workers,
// reading with an odd buffer size, and fails the test if it takes longer
// than a generous deadline (a hang).
func zstdParallel(t testing.TB, in []byte, workers int) ([]byte, error) {
	t.Helper()
	type result struct {
		out []byte
		err error
	}
	ch := make(chan result, 1)
	go func() {
		rc := newZstdWorkers(struct{ io.Reader }{bytes.NewReader(in)}, workers)
		defer rc.Close()
		var out bytes.Buffer
		buf := make([]byte, 7919)
		for {
			n, err := rc.Read(buf)
			out.Write(buf[:n])
			if err != nil {
				if err == io.EOF {
					err = nil
				}
				ch <- result{out.Bytes(), err}
				return
			}
		}
	}()
	select {
	case r := <-ch:
		return r.out, r.err
	case <-time.After(60 * time.Second):
		t.Fatalf("decoding %d bytes with %d workers hangs", len(in), workers)
		return nil, nil
	}
}

// checkSameAsReference decodes in both ways: where the reference succeeds
// the parallel decoder must give the same bytes, and where it fails the
// parallel decoder must fail too (and vice versa).
func checkSameAsReference(t testing.TB, in []byte, workers int) {
	t.Helper()
	want, werr := zstdReference(in)
	got, gerr := zstdParallel(t, in, workers)
	if len(in) == 0 {
		werr = io.ErrUnexpectedEOF // NewReader's rule for every algorithm
	}
	switch {
	case werr == nil && gerr != nil:
		t.Fatalf("%d workers: %v; the reference decodes %d bytes", workers, gerr, len(want))
	case werr != nil && gerr == nil:
		t.Fatalf("%d workers: decoded %d bytes; the reference fails: %v", workers, len(got), werr)
	case werr == nil && !bytes.Equal(got, want):
		t.Fatalf("%d workers: decoded %d bytes, not the reference's %d", workers, len(got), len(want))
	}
}

// zstdFrame compresses data as one frame: with its content size in the
// header (EncodeAll) or without (the streaming encoder), with or without
// a checksum.
func zstdFrame(t testing.TB, data []byte, withSize, crc bool) []byte {
	t.Helper()
	if withSize {
		enc, err := zstd.NewWriter(nil, zstd.WithEncoderCRC(crc), zstd.WithEncoderConcurrency(1))
		if err != nil {
			t.Fatal(err)
		}
		defer enc.Close()
		return enc.EncodeAll(data, nil)
	}
	var b bytes.Buffer
	enc, err := zstd.NewWriter(&b, zstd.WithEncoderCRC(crc), zstd.WithEncoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := enc.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// skippableFrame is a zstd skippable frame carrying payload.
func skippableFrame(nibble byte, payload []byte) []byte {
	b := binary.LittleEndian.AppendUint32(nil, zstdSkippableMagic|uint32(nibble&0xF))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(payload)))
	return append(b, payload...)
}

// multiFrame compresses data cut at the given frame sizes (the last frame
// takes the rest), alternating the header and checksum options, and
// returns the stream and the data.
func multiFrame(t testing.TB, data []byte, sizes ...int) []byte {
	t.Helper()
	var out []byte
	for i := 0; ; i++ {
		n := len(data)
		if i < len(sizes) {
			n = min(sizes[i], len(data))
		}
		out = append(out, zstdFrame(t, data[:n], i%2 == 0, i%3 != 1)...)
		data = data[n:]
		if len(data) == 0 && i >= len(sizes)-1 {
			return out
		}
	}
}

func TestZstdFramesMatchReference(t *testing.T) {
	data := sample(3 << 20)
	cases := map[string][]byte{
		"one frame with size":      zstdFrame(t, data, true, true),
		"one frame without size":   zstdFrame(t, data, false, false),
		"empty frame":              zstdFrame(t, nil, true, false),
		"empty frames":             append(zstdFrame(t, nil, true, true), zstdFrame(t, nil, false, true)...),
		"1-byte frames":            multiFrame(t, data[:40], 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1),
		"block-sized frames":       multiFrame(t, data, 128<<10, 128<<10+1, 128<<10-1, 1, 128<<10),
		"1 MiB frames":             multiFrame(t, data, 1<<20, 1<<20, 1<<20),
		"mixed frames":             multiFrame(t, data, 0, 17, 300<<10, 0, 1<<20, 5, 700<<10),
		"skippable frames":         bytes.Join([][]byte{skippableFrame(0, nil), zstdFrame(t, data[:1000], true, true), skippableFrame(0xF, sample(5000)), skippableFrame(3, []byte{1}), zstdFrame(t, data[1000:], false, true), skippableFrame(7, nil)}, nil),
		"only skippable frames":    skippableFrame(1, []byte("narfs")),
		"compressible":             multiFrame(t, make([]byte, 4<<20), 1<<20, 2<<20),
		"incompressible":           multiFrame(t, randomBytes(2<<20), 100<<10, 1<<20),
		"garbage between frames":   bytes.Join([][]byte{zstdFrame(t, data[:5000], true, true), []byte("garbage"), zstdFrame(t, data[:5000], true, true)}, nil),
		"zeros after frames":       append(zstdFrame(t, data[:5000], true, true), 0, 0, 0, 0),
		"1 byte after frames":      append(zstdFrame(t, data[:5000], true, true), 0x28),
		"3 bytes after frames":     append(zstdFrame(t, data[:5000], true, true), 0x28, 0xb5, 0x2f),
		"magic after frames":       append(zstdFrame(t, data[:5000], true, true), 0x28, 0xb5, 0x2f, 0xfd),
		"truncated skippable":      append(zstdFrame(t, data[:5000], true, true), skippableFrame(0, make([]byte, 100))[:50]...),
		"garbage":                  sample(100 << 10),
		"reserved block type":      withBlockHeader(t, 3<<1|1, 10),
		"block over 128 KiB":       withBlockHeader(t, (128<<10+1)<<3|1, 128<<10+1),
		"huge content size":        hostileHeader(0xE0, binary.LittleEndian.AppendUint64(nil, 1<<40)),
		"huge window":              hostileHeader(0x00, []byte{(31 - 10) << 3}),
		"window over the cap":      hostileHeader(0x00, []byte{(28 - 10) << 3}),
		"dictionary":               hostileHeader(0x21, []byte{7, 100}),
		"reserved descriptor bit":  hostileHeader(0x28, []byte{100}),
		"content size mismatch":    withContentSize(t, zstdFrame(t, data[:5000], true, false), 4999),
		"concatenated with zstd -": nil, // filled below when the CLI exists
	}
	if c := compressors["zstd"]; c != nil {
		cases["concatenated with zstd -"] = append(compressWithTool(t, "zstd", data[:1<<20]), compressWithTool(t, "zstd", data[1<<20:])...)
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			for _, workers := range []int{2, 3, 4} {
				checkSameAsReference(t, in, workers)
			}
		})
	}
}

// Frames over zstdMaxFrame, declared or not, are streamed; the frames
// around them still decode in parallel.
func TestZstdFramesLarge(t *testing.T) {
	if testing.Short() {
		t.Skip("compresses tens of MB")
	}
	data := sample(zstdMaxFrame + 3<<20)
	for name, in := range map[string][]byte{
		"large with size":    bytes.Join([][]byte{zstdFrame(t, data[:1000], true, true), zstdFrame(t, data, true, true), zstdFrame(t, data[:1000], false, true)}, nil),
		"large without size": bytes.Join([][]byte{zstdFrame(t, data[:1000], true, true), zstdFrame(t, data, false, true), zstdFrame(t, data[:1000], false, true)}, nil),
		"16 MiB frames":      multiFrame(t, data, 16<<20, 16<<20),
	} {
		t.Run(name, func(t *testing.T) { checkSameAsReference(t, in, 2) })
	}
}

func TestZstdFramesTruncatedAndCorrupt(t *testing.T) {
	data := sample(1 << 20)
	in := bytes.Join([][]byte{
		multiFrame(t, data, 1, 100, 200<<10, 0, 300<<10),
		skippableFrame(2, []byte("skip")),
		zstdFrame(t, data[:50000], false, true),
	}, nil)
	rng := rand.New(rand.NewPCG(5, 6))
	cuts := []int{0, 1, 3, 4, 5, 6, 9, 10, 13, 20, len(in) - 1, len(in) - 4, len(in) - 5}
	for range 40 {
		cuts = append(cuts, rng.IntN(len(in)))
	}
	for _, cut := range cuts {
		t.Run(fmt.Sprintf("cut at %d", cut), func(t *testing.T) {
			if _, err := zstdParallel(t, in[:cut], 2); err == nil {
				t.Errorf("cut at %d of %d: no error", cut, len(in))
			}
			checkSameAsReference(t, in[:cut], 2)
		})
	}
	for range 60 {
		at := rng.IntN(len(in))
		bad := bytes.Clone(in)
		bad[at] ^= byte(1 + rng.IntN(255))
		t.Run(fmt.Sprintf("flip at %d", at), func(t *testing.T) {
			checkSameAsReference(t, bad, 3)
		})
	}
}

// The input's errors surface as themselves, from any point.
func TestZstdFramesInputError(t *testing.T) {
	in := multiFrame(t, sample(1<<20), 100<<10, 100<<10, 100<<10)
	for _, cut := range []int{0, 5, 100, len(in) / 2, len(in) - 1, len(in)} {
		rc := newZstdWorkers(failingReader{bytes.NewReader(in[:cut])}, 2)
		_, err := io.ReadAll(rc)
		rc.Close()
		if !errors.Is(err, errInput) {
			t.Errorf("cut at %d: got %v, want the input's error", cut, err)
		}
	}
}

// Close stops the scanner and the workers, whether before the first Read,
// in the middle of the stream, or in the middle of a streamed frame.
func TestZstdFramesCloseStopsGoroutines(t *testing.T) {
	data := sample(4 << 20)
	for name, in := range map[string][]byte{
		"small frames":   multiFrame(t, data, 64<<10, 64<<10, 64<<10, 64<<10, 1<<20, 1<<20),
		"one frame":      zstdFrame(t, data, false, true),
		"garbage after":  append(multiFrame(t, data, 1<<20, 1<<20), sample(1000)...),
		"streamed frame": append(zstdFrame(t, make([]byte, zstdMaxFrame+1<<20), true, false), zstdFrame(t, data, true, false)...),
	} {
		for _, readFirst := range []int{0, 1000, 2 << 20} {
			t.Run(fmt.Sprintf("%s/read %d", name, readFirst), func(t *testing.T) {
				before := runtime.NumGoroutine()
				rc := newZstdWorkers(bytes.NewReader(in), 4)
				if readFirst > 0 {
					if _, err := io.ReadFull(rc, make([]byte, readFirst)); err != nil {
						t.Fatal(err)
					}
				}
				rc.Close()
				if n, err := rc.Read(make([]byte, 10)); n != 0 || err == nil {
					t.Errorf("Read after Close = %d, %v", n, err)
				}
				if after := settleGoroutines(before); after > before {
					t.Errorf("%d goroutines after Close, %d before", after, before)
				}
			})
		}
	}
}

// Many streams at once share the workers' decoder; run with -race.
func TestZstdFramesConcurrentStreams(t *testing.T) {
	data := sample(2 << 20)
	in := multiFrame(t, data, 100<<10, 300<<10, 1, 0, 500<<10, 200<<10)
	errs := make(chan error, 8)
	for i := range 8 {
		go func() {
			rc := newZstdWorkers(bytes.NewReader(in), 2+i%3)
			defer rc.Close()
			got, err := io.ReadAll(rc)
			if err == nil && !bytes.Equal(got, data) {
				err = fmt.Errorf("stream %d: decoded %d wrong bytes", i, len(got))
			}
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// A frame declaring a huge size, or whose blocks add up to more than a
// frame is allowed in memory, must not make the decoder buffer it.
func TestZstdFramesHostileSizesBounded(t *testing.T) {
	// One frame without a content size of 64 MiB of RLE blocks: 4 bytes
	// a block on the wire, 128 KiB decoded. Its window is 8 MiB; a larger
	// one would cost the streaming decoder that window (up to
	// maxZstdWindow), as before.
	var in []byte
	in = append(in, zstdFrame(t, sample(1000), true, true)...)
	in = append(in, 0x28, 0xb5, 0x2f, 0xfd, 0x00, (23-10)<<3)
	const blocks = 512
	for i := range blocks {
		h := uint32(128<<10)<<3 | 1<<1
		if i == blocks-1 {
			h |= 1
		}
		in = append(in, byte(h), byte(h>>8), byte(h>>16), 'x')
	}
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	rc := newZstdWorkers(bytes.NewReader(in), 2)
	defer rc.Close()
	n, peak, err := drain(rc)
	if err != nil || n != 1000+blocks*128<<10 {
		t.Fatalf("decoded %d bytes, %v", n, err)
	}
	if grown := int64(peak) - int64(before.HeapInuse); grown > zstdFrameBudget {
		t.Errorf("heap grew by %d MiB decoding a %d MiB RLE frame", grown>>20, n>>20)
	}
}

// The heap stays bounded while streaming many frames of Nix's size.
func TestZstdFramesHeapBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("compresses tens of MB")
	}
	const size, frame = 160 << 20, 16 << 20
	path := filepath.Join(t.TempDir(), "in")
	out, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	src := io.LimitReader(narLike{rand.New(rand.NewPCG(3, 4))}, size)
	buf := make([]byte, frame)
	enc, _ := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedFastest))
	for {
		n, _ := io.ReadFull(src, buf)
		if n == 0 {
			break
		}
		if _, err := out.Write(enc.EncodeAll(buf[:n], nil)); err != nil {
			t.Fatal(err)
		}
	}
	out.Close()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rc := newZstdWorkers(f, zstdMaxWorkers)
	defer rc.Close()
	// drain's HeapInuse counts garbage not yet collected; collect it, to
	// see what is live (and pooled for reuse).
	var n int64
	var peak uint64
	var ms runtime.MemStats
	buf = make([]byte, 256<<10)
	for next := int64(0); ; {
		m, err := rc.Read(buf)
		n += int64(m)
		if n >= next {
			runtime.GC()
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapAlloc)
			next = n + 4<<20
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("after %d bytes: %v", n, err)
		}
	}
	if n != size {
		t.Fatalf("decoded %d bytes, want %d", n, size)
	}
	// The budget, one frame waiting for it, the decoders' own state.
	if limit := uint64(zstdFrameBudget + frame + 8<<20); peak > limit {
		t.Errorf("peak live heap %d MiB, want ≤ %d MiB", peak>>20, limit>>20)
	}
	t.Logf("peak live heap %.1f MiB", float64(peak)/(1<<20))
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rng := rand.New(rand.NewPCG(7, 8))
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// hostileHeader is a frame header with descriptor fhd and the given
// optional fields, followed by one small raw last block.
func hostileHeader(fhd byte, fields []byte) []byte {
	b := []byte{0x28, 0xb5, 0x2f, 0xfd, fhd}
	b = append(b, fields...)
	return append(b, 5<<3|1, 0, 0, 'h', 'e', 'l', 'l', 'o')
}

// withBlockHeader is a valid frame followed by a frame whose only block
// has header bh and body bytes of 'x'.
func withBlockHeader(t testing.TB, bh uint32, body int) []byte {
	b := zstdFrame(t, []byte("before"), true, true)
	b = append(b, 0x28, 0xb5, 0x2f, 0xfd, 0x00, (20-10)<<3, byte(bh), byte(bh>>8), byte(bh>>16))
	return append(b, bytes.Repeat([]byte{'x'}, body)...)
}

// withContentSize rewrites the 2-byte content size of a small frame made
// by EncodeAll.
func withContentSize(t testing.TB, frame []byte, size int) []byte {
	fhd := frame[4]
	if fhd>>6 != 1 || fhd&(1<<5) == 0 || fhd&3 != 0 {
		t.Fatalf("frame header descriptor %#x: not a single segment with a 2-byte size", fhd)
	}
	b := bytes.Clone(frame)
	binary.LittleEndian.PutUint16(b[5:], uint16(size-256))
	return b
}

// FuzzZstdFrames checks that the parallel decoder agrees with the
// single-threaded one on any input.
func FuzzZstdFrames(f *testing.F) {
	// Small seeds keep the fuzzer fast; testdata/fuzz/FuzzZstdFrames has
	// more (made by the generator below and by fuzzing).
	data := sample(20 << 10)
	f.Add(multiFrame(f, data[:1000], 1, 0, 200))
	f.Add(multiFrame(f, data, 5000, 1, 10000))
	f.Add(append(skippableFrame(0, []byte("x")), zstdFrame(f, data[:300], false, true)...))
	f.Add(hostileHeader(0xE0, binary.LittleEndian.AppendUint64(nil, 1<<40)))
	f.Fuzz(func(t *testing.T, in []byte) {
		checkSameAsReference(t, in, 2)
	})
}

// Multi-frame input really goes to the workers, and a single large frame
// to the streaming decoder alone.
func TestZstdFramesUsesWorkers(t *testing.T) {
	for _, c := range []struct {
		name    string
		in      []byte
		workers int
	}{
		{"multi-frame", multiFrame(t, sample(1<<20), 100<<10, 100<<10, 100<<10, 100<<10), 3},
		{"single frame over the limit", zstdFrame(t, make([]byte, zstdMaxFrame+1), true, false), 0},
	} {
		z := newZstdFrames(bytes.NewReader(c.in), 3)
		if _, err := io.ReadAll(z); err != nil {
			t.Fatal(err)
		}
		// The scanner wrote nstart before queueing the end that Read saw.
		if z.nstart != c.workers {
			t.Errorf("%s: %d workers started, want %d", c.name, z.nstart, c.workers)
		}
		z.Close()
	}
}
