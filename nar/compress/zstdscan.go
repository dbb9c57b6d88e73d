package compress

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"slices"
)

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
