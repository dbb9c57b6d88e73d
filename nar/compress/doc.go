// Package compress decompresses NARs by their narinfo Compression name.
//
// # Names
//
// NewReader takes the narinfo Compression value: none, xz, zstd, bzip2, br,
// gzip, lz4 (the LZ4 frame format Nix's libarchive writes) and lzma (.lzma,
// "LZMA alone"). An empty name means bzip2, which is Nix's rule for narinfo
// files without the field. The same function decodes HTTP Content-Encoding
// values (x-gzip is accepted as gzip), but a caller decoding a
// Content-Encoding must map an absent header to "none" itself, never pass
// "". Anything else, including lzip (no maintained Go decoder), lzop, grzip,
// lrzip and compress, fails with an error wrapping ErrUnsupported that names
// the algorithm, so callers can answer EIO.
//
// # Implementations
//
// Every algorithm has a pure-Go decoder: klauspost/compress for zstd and
// gzip, andybalholm/brotli, pierrec/lz4, ulikunitz/xz for xz and lzma, and
// the standard library for bzip2. Those for xz, lzma and bzip2 run at a
// half to two thirds of the C tools' speed, so when a C tool is on PATH
// NewReader runs it as a child process instead: xz (with -T0, so blocks of
// Nix's parallel-compression files decode in parallel) for xz and lzma,
// and lbzip2 (parallel) or else bzip2 for bzip2. A goroutine copies the
// input to the child's stdin, or an *os.File input becomes its stdin
// directly, and the child's stdout is the stream. The pure-Go decoder is
// the fallback when no tool is installed or none starts; tests run every
// implementation on the same inputs.
//
// zstd made of several independent frames (Nix writes 16 MiB frames, narfs
// push one per chunk group, and concatenated files are valid zstd) decodes
// its frames in parallel on up to min(GOMAXPROCS-1, 4) goroutines, in order;
// frames over 32 MiB, and all input with GOMAXPROCS 2 or less (a fetch
// keeps two cores busy already), decode as a stream on the reader's
// goroutine as before (zstdframes.go).
//
// # Errors
//
// Corrupt or truncated input makes Read fail; it never ends in a silent
// short stream with io.EOF, and empty input counts as truncated. For a
// child process a non-zero exit status is returned from Read in place of
// io.EOF, with the tool's stderr in the message; an error from the input
// reader wins over the tool's complaint about the truncation it caused.
//
// # Resources
//
// Memory stays bounded whatever the input size: nothing buffers a whole
// stream. The Go heap of a stream stays under 20 MiB for every format with
// the windows Nix writes, except multi-frame zstd decoded in parallel: its
// frames in flight, compressed and decoded, are held to a 32 MiB budget
// (plus the compressed bytes of one frame waiting for it, at most 33 MiB).
// zstd windows are capped at 128 MiB (zstd's own default limit) and .lzma
// dictionaries at 256 MiB, against mangled headers. A child xz needs about 10 MiB for single-block files and up to
// xzMTMemlimit (128 MiB) for multi-block ones, where it trades memory for
// threads.
//
// Close releases everything NewReader started — decoder goroutines, and a
// child process, which it kills and reaps — and is safe before EOF. Close
// does not close the input: a goroutine blocked in the input's Read lingers
// until that Read returns, so callers close the input (an HTTP body, say)
// after Close. A reader is not safe for concurrent use.
package compress
