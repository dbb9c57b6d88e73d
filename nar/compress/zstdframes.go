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
	"io"
	"runtime"
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
