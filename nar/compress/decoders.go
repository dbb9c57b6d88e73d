package compress

import (
	"bufio"
	"compress/bzip2"
	"errors"
	"fmt"
	"io"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/gzip"
	"github.com/pierrec/lz4/v4"
	"github.com/ulikunitz/xz"
	"github.com/ulikunitz/xz/lzma"
)

// maxZstdWindow bounds the zstd window, and with it the decoder's memory.
// It matches the zstd CLI's default decompression limit (--long=27): Nix
// writes 2–8 MiB windows, and only a stream that declares a larger window
// (up to this cap) costs more memory.
const maxZstdWindow = 128 << 20

// maxLZMADict bounds the dictionary a .lzma header may ask for. Real files
// use at most 64 MiB (xz -9); a mangled header must not allocate GiBs.
const maxLZMADict = 256 << 20

// decoder adapts a pure-Go decompressor: it opens it on the first Read (so
// NewReader does no I/O), wraps errors with the algorithm name, makes them
// sticky, and turns empty input into an error rather than an empty stream.
type decoder struct {
	name string
	src  sourceReader
	// open builds the decompressor over src; release, if not nil, frees
	// what it holds (goroutines, buffers).
	open    func(src io.Reader) (r io.Reader, release func(), err error)
	r       io.Reader
	release func()
	err     error // sticky; errClosed after Close
}

// sourceReader notes whether any compressed byte arrived, so that empty
// input is reported as truncated for every algorithm.
type sourceReader struct {
	r   io.Reader
	got bool
}

func (s *sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if n > 0 {
		s.got = true
	}
	return n, err
}

func newDecoder(name string, r io.Reader, open func(io.Reader) (io.Reader, func(), error)) *decoder {
	return &decoder{name: name, src: sourceReader{r: r}, open: open}
}

func (d *decoder) Read(p []byte) (int, error) {
	if d.err != nil {
		return 0, d.err
	}
	if d.r == nil {
		r, release, err := d.open(&d.src)
		if err != nil {
			return 0, d.fail(err)
		}
		d.r, d.release = r, release
	}
	n, err := d.r.Read(p)
	if err != nil {
		if err == io.EOF && !d.src.got {
			err = io.ErrUnexpectedEOF
		}
		if err != io.EOF {
			err = d.fail(err)
		}
	}
	return n, err
}

func (d *decoder) fail(err error) error {
	if errors.Is(err, io.EOF) {
		// Only a decompressor's clean end may be io.EOF; any other EOF
		// (from reading a header, say) means the input was cut short.
		err = io.ErrUnexpectedEOF
	}
	d.err = fmt.Errorf("%s: %w", d.name, err)
	return d.err
}

func (d *decoder) Close() error {
	if d.release != nil {
		d.release()
		d.release = nil
	}
	d.err = errClosed
	return nil
}

// none passes the input through unchanged; there is nothing to verify.
type none struct {
	r   io.Reader
	err error
}

func newNone(r io.Reader) io.ReadCloser { return &none{r: r} }

func (n *none) Read(p []byte) (int, error) {
	if n.err != nil {
		return 0, n.err
	}
	return n.r.Read(p)
}

func (n *none) Close() error {
	n.err = errClosed
	return nil
}

func newGzip(r io.Reader) io.ReadCloser {
	return newDecoder("gzip", r, func(src io.Reader) (io.Reader, func(), error) {
		zr, err := gzip.NewReader(src)
		if err != nil {
			return nil, nil, err
		}
		return zr, func() { zr.Close() }, nil
	})
}

// newZstd decodes the frames of multi-frame zstd in parallel (see
// zstdframes.go) when there is more than one CPU to do it with.
func newZstd(r io.Reader) io.ReadCloser {
	return newZstdWorkers(r, zstdWorkers())
}

func newZstdWorkers(r io.Reader, workers int) io.ReadCloser {
	return newDecoder("zstd", r, func(src io.Reader) (io.Reader, func(), error) {
		if workers >= 2 {
			zf := newZstdFrames(src, workers)
			return zf, func() { zf.Close() }, nil
		}
		zr, err := newZstdStream(src)
		if err != nil {
			return nil, nil, err
		}
		return zr, zr.Close, nil
	})
}

// zstdConcurrency > 1 decodes blocks in goroutines ahead of the reader.
var zstdConcurrency = 1

func newBrotli(r io.Reader) io.ReadCloser {
	return newDecoder("br", r, func(src io.Reader) (io.Reader, func(), error) {
		return brotli.NewReader(src), nil, nil
	})
}

func newLZ4(r io.Reader) io.ReadCloser {
	return newDecoder("lz4", r, func(src io.Reader) (io.Reader, func(), error) {
		return lz4.NewReader(src), nil, nil
	})
}

// ulikunitz/xz reads its input a byte at a time through io.ByteReader
// when it can, and a syscall per byte otherwise: give it a buffer.
const lzmaInputBuffer = 64 << 10

func newXZ(r io.Reader) io.ReadCloser {
	return newDecoder("xz", r, func(src io.Reader) (io.Reader, func(), error) {
		xr, err := xz.NewReader(bufio.NewReaderSize(src, lzmaInputBuffer))
		if err != nil {
			return nil, nil, err
		}
		return xr, nil, nil
	})
}

func newLZMA(r io.Reader) io.ReadCloser {
	return newDecoder("lzma", r, func(src io.Reader) (io.Reader, func(), error) {
		lr, err := lzma.ReaderConfig{DictCap: maxLZMADict}.NewReader(bufio.NewReaderSize(src, lzmaInputBuffer))
		if err != nil {
			return nil, nil, err
		}
		return lr, nil, nil
	})
}

func newBzip2(r io.Reader) io.ReadCloser {
	return newDecoder("bzip2", r, func(src io.Reader) (io.Reader, func(), error) {
		return bzip2.NewReader(src), nil, nil
	})
}
