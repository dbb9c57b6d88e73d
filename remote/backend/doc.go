// Package backend reads Nix binary caches over file://, http(s):// and s3://
// behind one small interface, Backend.
//
// # Store URLs
//
// ParseStoreURL accepts every store parameter Nix knows (most only matter
// to writers and are ignored here) and rejects unknown names, because a
// typo such as `regoin` would otherwise silently read the wrong region.
// StoreURL.String and Backend.String never contain credentials.
//
// # Errors
//
// Callers branch on sentinels with errors.Is: ErrNotFound (missing key,
// including http 403/410 and S3 AccessDenied, as Nix treats them), ErrAuth
// (rejected credentials — never folded into ErrNotFound, so a wrong secret
// does not look like an empty cache), ErrUnsupported, ErrRange,
// ErrInvalidKey, ErrTooLarge, ErrStalled, ErrTimeout. Every error names the
// cache and the key.
//
// # Never hang, retry idempotent reads
//
// A guarding http.RoundTripper sits below both the plain http client and the
// AWS SDK: each attempt must produce headers within Options.RequestTimeout,
// each body Read must make progress within Options.StallTimeout (time the
// caller spends between Reads does not count), and a body shorter than its
// Content-Length fails with io.ErrUnexpectedEOF. Requests are retried with
// Nix's backoff (250ms·2^(k-1), ×2^U[0,0.5) jitter). The SDK's retry token
// bucket is disabled: under many parallel reads it refuses retries exactly
// when a server hiccups. GetRange also resumes a body that fails part way,
// so a reset connection mid-NAR costs a retry, not an EIO.
//
// # Encodings
//
// Get and GetRange return stored bytes and report Content-Encoding raw; only
// ReadAll decodes it (narinfo, .ls and nix-cache-info may be uploaded with
// Content-Encoding). Transparent gzip is disabled in every client.
//
// # Parallel ranged reads
//
// NewParallelReader reads one object as GetRange parts in flight, in
// order, like mountpoint-s3's prefetcher: one FirstPart request first (a
// small object costs one), then, once the server has answered with a
// range, MaxConcurrency parts in flight, with parts requested and not yet
// read bounded by Budget. Part buffers come from a PartPool, which
// readers may share so that all downloads of a process together hold a
// bounded amount of memory, reused rather than left to the garbage
// collector; a reader holding none always gets one, so no download waits
// for another's memory. A part whose body breaks is resumed from its last
// byte. Its
// requests carry a context mark that makes http refuse a Content-Encoding
// (and s3 a stored Content-Encoding) with ErrUnsupported instead of
// working around it, so the caller can read the object with Get.
//
// # Servers that ignore Range
//
// GetRange works around a 200 by discarding the bytes before the range,
// which costs the object's prefix per request. GetRangeOrWhole (used by
// the parallel reader's first request and by the blob of an indexed path)
// instead hands the caller the 200's body, the whole object, to read as
// the stream it is: the first NAR from such a server crosses the network
// once, not twice, and an indexed path is streamed once.
//
// # file://
//
// Keys are opened through os.Root: ".." and symlinks that leave the store
// directory are refused (ErrInvalidKey), symlinks within it work.
package backend
