package compress

import (
	"errors"
	"fmt"
	"io"
)

// ErrUnsupported is wrapped by NewReader's error for unknown names and for
// names this package does not decode.
var ErrUnsupported = errors.New("unsupported compression")

// errClosed is returned by Read after Close.
var errClosed = errors.New("compress: read after Close")

// algorithm describes how to decode one compression name.
type algorithm struct {
	// pureGo returns a decoder for r. It must not read from r itself; the
	// first Read does, so NewReader never blocks on I/O.
	pureGo func(r io.Reader) io.ReadCloser
	// tools give the command lines of external decompressors to try,
	// best first; each writes the decompressed stream of stdin to stdout.
	tools []func() []string
}

// algorithms maps canonical names to their decoders. Read-only after init.
var algorithms = map[string]algorithm{
	"none":  {pureGo: newNone},
	"gzip":  {pureGo: newGzip},
	"zstd":  {pureGo: newZstd},
	"br":    {pureGo: newBrotli},
	"lz4":   {pureGo: newLZ4},
	"xz":    {pureGo: newXZ, tools: []func() []string{xzTool("xz")}},
	"lzma":  {pureGo: newLZMA, tools: []func() []string{xzTool("lzma")}},
	"bzip2": {pureGo: newBzip2, tools: []func() []string{fixedTool("lbzip2", "-dc"), fixedTool("bzip2", "-dc")}},
}

// aliases maps accepted spellings to canonical names. "" is Nix's narinfo
// default; x-gzip is the HTTP/1.1 alias of gzip.
var aliases = map[string]string{
	"":       "bzip2",
	"x-gzip": "gzip",
}

func canonical(algo string) string {
	if c, ok := aliases[algo]; ok {
		return c
	}
	return algo
}

// Supported reports whether NewReader decodes algo.
func Supported(algo string) bool {
	_, ok := algorithms[canonical(algo)]
	return ok
}

// NewReader returns a reader of the stream r decompressed with algo, a
// narinfo Compression value or an HTTP Content-Encoding value. "" means
// bzip2 (Nix's narinfo rule); callers decoding a Content-Encoding must pass
// "none" for an absent header, never "". Unknown and unsupported names give
// an error wrapping ErrUnsupported.
//
// NewReader does not read from r. Corrupt or truncated input makes Read
// fail. The caller must call Close, which may be done before EOF and
// releases goroutines and child processes; it does not close r. The reader
// is not safe for concurrent use.
func NewReader(algo string, r io.Reader) (io.ReadCloser, error) {
	return newReader(algo, r, true)
}

// newReader is NewReader with the choice of external tools exposed, so that
// tests run both paths on the same inputs.
func newReader(algo string, r io.Reader, useTools bool) (io.ReadCloser, error) {
	a, ok := algorithms[canonical(algo)]
	if !ok {
		return nil, fmt.Errorf("compression %q: %w", algo, ErrUnsupported)
	}
	if useTools {
		for _, tool := range a.tools {
			if rc, err := startTool(tool(), r); err == nil {
				return rc, nil
			}
			// Not installed or not startable: r is untouched, so the
			// next tool or the pure-Go decoder can still take over.
		}
	}
	return a.pureGo(r), nil
}
