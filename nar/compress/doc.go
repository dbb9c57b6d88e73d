// Package compress decompresses NARs by their narinfo Compression name.
//
// # Names
//
// NewReader takes the narinfo Compression value: none, xz, zstd, bzip2, br,
// gzip, lz4 and lzma. An empty name means bzip2, which is Nix's rule for
// narinfo files written before the field existed. The same function also
// decodes HTTP Content-Encoding values (x-gzip is accepted as gzip), but a
// caller decoding a Content-Encoding must map an absent header to "none"
// itself, never pass "". Anything else, including lzip, lzop, grzip, lrzip
// and compress, fails with an error wrapping ErrUnsupported that names the
// algorithm, so callers can answer EIO.
//
// # Implementations
//
// Every algorithm has a pure-Go decoder. For xz, lzma and bzip2 the pure-Go
// decoders are two to three times slower than the C tools, so when the C
// tool is on PATH (xz; lbzip2, else bzip2) NewReader runs it as a child
// process: a goroutine copies the compressed input to its stdin and its
// stdout is the stream. Pure-Go decoders stay as the fallback when the tool
// is missing or cannot be started.
//
// # Errors
//
// Corrupt or truncated input makes Read fail; it never ends in a silent
// short stream with io.EOF. For a child process a non-zero exit status is
// returned from Read in place of io.EOF, with the tool's stderr in the
// message; an error from the input reader wins over the tool's complaint
// about the truncated input it caused.
//
// # Resources
//
// Memory stays bounded whatever the input size: nothing buffers a whole
// stream, and zstd windows are capped (see maxZstdWindow). Close releases
// everything NewReader started — decoder goroutines, and for a child process
// it kills and reaps it — and is safe before EOF. Close does not close the
// input reader: a goroutine blocked in its Read lingers until that Read
// returns, so callers close the input (an HTTP body, say) after Close.
package compress
