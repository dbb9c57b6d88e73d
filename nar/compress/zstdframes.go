package compress

// Parallel decoding of multi-frame zstd.
//
// A zstd stream may be several independent frames one after another: Nix
// writes ~16 MiB frames, narfs push one frame per chunk group, and `cat
// a.zst b.zst` is valid zstd. Frames share no state, so they can be decoded
// concurrently. zstdFrames does that:
//
//   - a scanner goroutine reads the compressed stream and cuts it at frame
//     boundaries, parsing just enough of each frame (header, then the
//     3-byte header of every block) to know where it ends;
//   - each complete frame small enough to hold in memory goes to one of a
//     few workers, which decodes it whole with DecodeAll;
//   - Read hands out the decoded frames in stream order.
//
// Everything the scanner does not want to hold is decoded by a streaming
// decoder on the reader's goroutine, in order, exactly as the single-threaded
// decoder does today: a frame that declares (or, without a declared size,
// whose blocks add up to) more than zstdMaxFrame, or a window beyond it, is
// streamed straight from the input. So is anything the scanner does not
// understand — garbage, a truncated header, a reserved block type, a block
// over 128 KiB — from that point to the end of the input: the streaming
// decoder then produces the same bytes and the same error it always has. A
// worker that fails on a frame has its frame re-decoded by the streaming
// decoder too, so errors, and the output before them, do not depend on the
// path a frame took.
//
// Memory: frames in flight (their compressed bytes until decoded, and their
// decoded bytes until Read has handed them out) count against
// zstdFrameBudget, which the scanner waits for once it has read a frame, so
// at most one more frame's compressed bytes (≤ zstdMaxFrame plus block
// headers) wait outside it. A streamed frame costs the streaming decoder's
// window, as before, plus what the scanner had read of it (≤ 33 MiB).
// Buffers are recycled through sync.Pools, which the GC empties.
//
// Cost: input without several frames pays a copy of its compressed bytes
// (a single frame without a declared size is read ahead until its blocks
// add up to zstdMaxFirstFrame, ~1 MiB compressed), and the output of a frame
// held in memory starts once the whole frame has arrived.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"runtime"
	"slices"
	"sync"

	"github.com/klauspost/compress/zstd"
)

const (
	// zstdMaxFrame is the largest frame decoded in memory; larger ones are
	// streamed. Nix's frames are 16 MiB.
	zstdMaxFrame = 32 << 20
	// zstdMaxFirstFrame is the limit for a first frame without a declared
	// size. Most NARs are one such frame (what Nix wrote before it cut
	// frames, and zstd -c): it streams after a short read-ahead, as before,
	// rather than after reading up to 11 MiB.
	zstdMaxFirstFrame = 4 << 20
	// zstdFrameBudget bounds the bytes of frames in flight: with 16 MiB
	// frames, one being read out and one being decoded (a fetch's memory
	// stays within 64 MiB; smaller frames, as narfs push writes, get more
	// workers busy).
	zstdFrameBudget = 32 << 20
	// zstdBudgetUnit is the granularity of the budget.
	zstdBudgetUnit = 1 << 20
	// zstdMaxWorkers caps the decoding goroutines of one stream.
	zstdMaxWorkers = 4
	// zstdMaxBlock is the largest block the format allows.
	zstdMaxBlock = 128 << 10
	// zstdMaxQueue bounds the number of frames in flight, however small.
	zstdMaxQueue = 64
)

const (
	zstdFrameMagic     = 0xFD2FB528
	zstdSkippableMagic = 0x184D2A50 // low 4 bits free
)

// zstdWorkers is how many frames one stream decodes at a time; below 2
// NewReader uses the plain streaming decoder. A fetch already keeps two
// cores busy (decompression, hashing, parsing and writing overlap), and on
// two cores parallel frames measured no faster and cost 20–30% more CPU:
// the workers take the cores beyond those two.
func zstdWorkers() int { return min(runtime.GOMAXPROCS(0)-1, zstdMaxWorkers) }

// zstdDecodeAll is the decoder the workers of every stream share; DecodeAll
// is safe for concurrent use and keeps zstdMaxWorkers block decoders.
var zstdDecodeAll = sync.OnceValues(func() (*zstd.Decoder, error) {
	return zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(zstdMaxWorkers),
		zstd.WithDecoderMaxWindow(maxZstdWindow),
		zstd.WithDecoderMaxMemory(zstdMaxFrame),
	)
})

// newZstdStream is today's single-threaded streaming decoder.
func newZstdStream(r io.Reader) (*zstd.Decoder, error) {
	return zstd.NewReader(r,
		zstd.WithDecoderMaxWindow(maxZstdWindow),
		zstd.WithDecoderConcurrency(zstdConcurrency),
	)
}

// zframe is one entry of the stream, in order: a frame held in memory
// (comp), a reader to stream (live), or the end of the input (end).
type zframe struct {
	comp      []byte
	out       []byte
	err       error         // the worker's
	done      chan struct{} // closed by the worker
	need      int           // bytes it decodes to, at most
	outUnits  int           // budget held by the decoded bytes
	compUnits int           // budget held by comp until decoded

	live   io.Reader     // stream this, then close resume
	resume chan struct{} // lets the scanner go on after live

	end error // io.EOF or the input's error
}

type zstdFrames struct {
	br      *bufio.Reader // the input; the scanner's except while live
	workers int

	order  chan *zframe  // scanner → Read, in stream order
	jobs   chan *zframe  // scanner → workers
	budget chan struct{} // one token per zstdBudgetUnit in flight
	quit   chan struct{} // closed by Close
	nstart int           // workers started (scanner only)
	nframe int           // frames scanned (scanner only)

	outBufs, compBufs bufList

	// Read's state.
	cur     []byte
	head    *zframe       // the frame cur belongs to
	stream  *zstd.Decoder // for live frames and worker failures
	inLive  bool
	ended   error
	started bool
}

func newZstdFrames(r io.Reader, workers int) *zstdFrames {
	return &zstdFrames{
		br:      bufio.NewReaderSize(r, 64<<10),
		workers: workers,
		order:   make(chan *zframe, zstdMaxQueue),
		jobs:    make(chan *zframe, zstdMaxQueue),
		budget:  make(chan struct{}, zstdFrameBudget/zstdBudgetUnit),
		quit:    make(chan struct{}),

		outBufs:  newBufList(&zstdOutPool),
		compBufs: newBufList(&zstdCompPool),
	}
}

func (z *zstdFrames) Read(p []byte) (int, error) {
	if !z.started {
		z.started = true
		go z.scan()
	}
	for {
		if len(z.cur) > 0 {
			n := copy(p, z.cur)
			z.cur = z.cur[n:]
			return n, nil
		}
		if z.inLive {
			n, err := z.stream.Read(p)
			if err == io.EOF {
				z.inLive = false
				z.finishHead()
				if n == 0 {
					continue
				}
				err = nil
			}
			return n, err
		}
		z.finishHead()
		if z.ended != nil {
			return 0, z.ended
		}
		f := <-z.order
		switch {
		case f.end != nil:
			z.ended = f.end
		case f.live != nil:
			z.head = f
			if err := z.startStream(f.live); err != nil {
				return 0, err
			}
		default:
			<-f.done
			z.head = f
			if f.err != nil {
				// Let the streaming decoder have its say: its output and
				// error are those of the single-threaded path.
				if err := z.startStream(bytes.NewReader(f.comp)); err != nil {
					return 0, err
				}
				continue
			}
			z.cur = f.out
		}
	}
}

func (z *zstdFrames) startStream(r io.Reader) error {
	if z.stream == nil {
		d, err := newZstdStream(r)
		if err != nil {
			return err
		}
		z.stream = d
	} else if err := z.stream.Reset(r); err != nil {
		return err
	}
	z.inLive = true
	return nil
}

// finishHead gives back what the frame just read out held.
func (z *zstdFrames) finishHead() {
	f := z.head
	if f == nil {
		return
	}
	z.head = nil
	if f.resume != nil {
		close(f.resume)
		return
	}
	units := f.outUnits
	if f.err != nil {
		units += f.compUnits // the worker kept comp for the fallback
	}
	for range units {
		<-z.budget
	}
	z.outBufs.put(f.out)
	f.comp, f.out = nil, nil
}

func (z *zstdFrames) Close() error {
	select {
	case <-z.quit:
	default:
		close(z.quit)
		// Buffers still in flight are the GC's; a worker may yet put one
		// back, which then stays with this stream's garbage.
		z.outBufs.release()
		z.compBufs.release()
	}
	if z.stream != nil {
		z.stream.Close()
	}
	return nil
}

// send queues f for Read; false after Close.
func (z *zstdFrames) send(f *zframe) bool {
	select {
	case z.order <- f:
		return true
	case <-z.quit:
		return false
	}
}

// scan cuts the input into frames until its end, an error, or Close.
func (z *zstdFrames) scan() {
	defer close(z.jobs)
	for {
		f, err := z.nextFrame()
		if err != nil {
			z.send(&zframe{end: err})
			return
		}
		if f.live != nil {
			f.resume = make(chan struct{})
			if !z.send(f) {
				return
			}
			select {
			case <-f.resume: // Read streamed it to its end: br is ours again
				continue
			case <-z.quit:
				return
			}
		}
		for range f.outUnits + f.compUnits {
			select {
			case z.budget <- struct{}{}:
			case <-z.quit:
				return
			}
		}
		if z.nstart < z.workers {
			z.nstart++
			go z.work()
		}
		f.done = make(chan struct{})
		z.jobs <- f // cap zstdMaxQueue ≥ frames in flight: never blocks
		if !z.send(f) {
			return
		}
	}
}

func (z *zstdFrames) work() {
	dec, derr := zstdDecodeAll()
	for {
		select {
		case <-z.quit:
			return
		case f, ok := <-z.jobs:
			if !ok {
				return
			}
			if derr != nil {
				f.err = derr
				close(f.done)
				continue
			}
			// Decode into a buffer that fits, so that DecodeAll never
			// grows it: growing copies, and leaves garbage.
			buf := z.outBufs.get()
			if cap(buf) < f.need {
				buf = make([]byte, 0, f.need)
			}
			f.out, f.err = dec.DecodeAll(f.comp, buf)
			if f.err == nil {
				z.compBufs.put(f.comp)
				f.comp = nil
				for range f.compUnits {
					<-z.budget
				}
			}
			close(f.done)
		}
	}
}

// bufList recycles the buffers of decoded or compressed frames: Nix's
// frames are all the same size, and fresh 16 MiB buffers cost page faults
// and zeroing. A stream keeps a few for itself (a sync.Pool loses its
// contents at every GC, and 16 MiB buffers make GCs frequent) and leaves
// them to the pool, shared by streams, when it closes.
type bufList struct {
	own  chan []byte
	pool *sync.Pool
}

var zstdOutPool, zstdCompPool sync.Pool

func newBufList(pool *sync.Pool) bufList {
	return bufList{own: make(chan []byte, zstdMaxWorkers), pool: pool}
}

func (l bufList) get() []byte {
	select {
	case b := <-l.own:
		return b
	default:
	}
	if b, ok := l.pool.Get().(*[]byte); ok {
		return (*b)[:0]
	}
	return nil
}

func (l bufList) put(b []byte) {
	if cap(b) == 0 {
		return
	}
	select {
	case l.own <- b[:0]:
	default:
		l.pool.Put(&b)
	}
}

// release hands the stream's buffers to the pool.
func (l bufList) release() {
	for {
		select {
		case b := <-l.own:
			l.pool.Put(&b)
		default:
			return
		}
	}
}

func units(n int) int {
	return min((n+zstdBudgetUnit-1)/zstdBudgetUnit, zstdFrameBudget/zstdBudgetUnit/2)
}

// nextFrame reads the next frame: into memory if it is small, or else as a
// live reader over the input. Skippable frames are skipped. It returns
// io.EOF at the clean end of the input and the input's errors.
func (z *zstdFrames) nextFrame() (*zframe, error) {
	var hdr [18]byte // magic, descriptor, window, dictionary ID, content size
	for {
		n, err := io.ReadFull(z.br, hdr[:4])
		if n == 0 && err == io.EOF {
			return nil, io.EOF
		}
		if err != nil {
			return z.handOff(hdr[:n], err)
		}
		magic := binary.LittleEndian.Uint32(hdr[:4])
		if magic&^0xF != zstdSkippableMagic {
			if magic != zstdFrameMagic {
				return z.handOff(hdr[:4], nil)
			}
			break
		}
		if n, err := io.ReadFull(z.br, hdr[4:8]); err != nil {
			return z.handOff(hdr[:4+n], err)
		}
		size := int64(binary.LittleEndian.Uint32(hdr[4:8]))
		if n, err := io.CopyN(io.Discard, z.br, size); n < size {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
	if _, err := io.ReadFull(z.br, hdr[4:5]); err != nil {
		return z.handOff(hdr[:4], err)
	}
	fhd := hdr[4]
	single := fhd&(1<<5) != 0
	dictSize := [4]int{0, 1, 2, 4}[fhd&3]
	fcsSize := [4]int{0, 2, 4, 8}[fhd>>6]
	if fcsSize == 0 && single {
		fcsSize = 1
	}
	hlen := 5 + dictSize + fcsSize
	if !single {
		hlen++
	}
	if n, err := io.ReadFull(z.br, hdr[5:hlen]); err != nil {
		return z.handOff(hdr[:5+n], err)
	}
	if fhd&(1<<3) != 0 || dictSize > 0 && !allZero(hdr[hlen-fcsSize-dictSize:hlen-fcsSize]) {
		return z.handOff(hdr[:hlen], nil) // reserved bit, or a dictionary we do not have
	}
	var window uint64
	if !single {
		wd := hdr[5]
		base := uint64(1) << (10 + wd>>3)
		window = base + base/8*uint64(wd&7)
	}
	fcs, hasFCS := uint64(0), fcsSize > 0
	switch b := hdr[hlen-fcsSize : hlen]; fcsSize {
	case 1:
		fcs = uint64(b[0])
	case 2:
		fcs = uint64(binary.LittleEndian.Uint16(b)) + 256
	case 4:
		fcs = uint64(binary.LittleEndian.Uint32(b))
	case 8:
		fcs = binary.LittleEndian.Uint64(b)
	}
	if single {
		window = max(fcs, 1<<10)
	}
	z.nframe++
	fr := &frameReader{br: z.br, pending: hdr[:hlen:hlen], window: window, checksum: fhd&(1<<2) != 0}
	if window > zstdMaxFrame || hasFCS && fcs > zstdMaxFrame {
		return &zframe{live: fr}, nil
	}

	// Read the frame into memory until it ends or turns out too large.
	limit := uint64(zstdMaxFrame)
	if z.nframe == 1 && !hasFCS {
		limit = zstdMaxFirstFrame
	}
	comp := z.compBufs.get()
	for {
		if len(comp) == cap(comp) {
			comp = slices.Grow(comp, max(64<<10, len(comp)))
		}
		n, err := fr.Read(comp[len(comp):cap(comp)])
		comp = comp[:len(comp)+n]
		if err == io.EOF {
			break
		}
		if err == io.ErrUnexpectedEOF {
			fr.passthrough = true // truncated: let the streaming decoder say so
		} else if err != nil {
			return nil, err
		}
		if fr.passthrough || fr.bound > limit {
			// Not ours to parse, or too large to hold: stream it.
			return &zframe{live: io.MultiReader(bytes.NewReader(comp), fr)}, nil
		}
	}
	need := int(fr.bound)
	if hasFCS {
		need = int(fcs)
	}
	return &zframe{comp: comp, need: need, outUnits: units(need), compUnits: units(len(comp))}, nil
}

// handOff streams the rest of the input, from the bytes read already, with
// the streaming decoder: it reports what is wrong as it always has. An
// input error other than a short read ends the stream with that error.
func (z *zstdFrames) handOff(read []byte, err error) (*zframe, error) {
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		return nil, err
	}
	fr := &frameReader{br: z.br, pending: append([]byte(nil), read...), passthrough: true}
	return &zframe{live: fr}, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// frameReader reads one frame from br, from just after its header (which
// it returns first, from pending) to its end, where it returns io.EOF. It
// sums in bound what the blocks seen so far can decode to. On anything it
// does not expect it turns passthrough: it returns the rest of br as is,
// for the streaming decoder to judge.
type frameReader struct {
	br          *bufio.Reader
	pending     []byte // bytes to return before reading br
	body        int    // bytes of the current block (or checksum) left in br
	window      uint64
	checksum    bool
	last        bool // the last block has been seen
	done        bool
	passthrough bool
	bound       uint64
	hdr         [4]byte
}

func (fr *frameReader) Read(p []byte) (int, error) {
	for {
		if len(fr.pending) > 0 {
			n := copy(p, fr.pending)
			fr.pending = fr.pending[n:]
			return n, nil
		}
		if fr.passthrough {
			return fr.br.Read(p)
		}
		if fr.body > 0 {
			n, err := fr.br.Read(p[:min(len(p), fr.body)])
			fr.body -= n
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return n, err
		}
		if fr.done {
			return 0, io.EOF
		}
		if fr.last {
			fr.done = true
			if fr.checksum {
				fr.body = 4
			}
			continue
		}
		n, err := io.ReadFull(fr.br, fr.hdr[:3])
		if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
			return 0, err
		}
		fr.pending = fr.hdr[:n]
		if err != nil {
			fr.passthrough = true
			continue
		}
		bh := uint32(fr.hdr[0]) | uint32(fr.hdr[1])<<8 | uint32(fr.hdr[2])<<16
		size := int(bh >> 3)
		fr.last = bh&1 != 0
		if size > zstdMaxBlock || uint64(size) > fr.window {
			fr.passthrough = true
			continue
		}
		switch bh >> 1 & 3 {
		case 0: // raw
			fr.body = size
			fr.bound += uint64(size)
		case 1: // RLE: one byte, repeated size times
			fr.body = 1
			fr.bound += uint64(size)
		case 2: // compressed
			if size < 2 {
				fr.passthrough = true
				continue
			}
			fr.body = size
			fr.bound += min(zstdMaxBlock, fr.window)
		default: // reserved
			fr.passthrough = true
		}
	}
}
