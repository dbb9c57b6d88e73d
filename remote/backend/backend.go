package backend

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// Object is one GET response. The caller must Close Body.
type Object struct {
	Body io.ReadCloser
	// Size is the number of bytes Body yields, -1 if unknown.
	Size int64
	// ContentEncoding is the transport encoding exactly as the server sent
	// it ("" if none). Get never decodes it; ReadAll does.
	ContentEncoding string
}

// Info is what Stat learns without reading the body.
type Info struct {
	Size            int64 // -1 if the server did not say
	ContentEncoding string
}

// Backend is a read-only view of one binary cache.
//
// Keys are cache-relative ("nix-cache-info", "<hash>.narinfo",
// "nar/xxx.nar.zst"). The http backend also accepts an absolute http(s) URL
// as key, because narinfo URL fields may be absolute; file and s3 reject
// such keys with ErrInvalidKey.
//
// Contract, for every implementation:
//   - A missing key is reported as an error wrapping ErrNotFound; rejected
//     credentials as ErrAuth, never ErrNotFound.
//   - Every error names the cache (String()) and the key.
//   - Safe for concurrent use.
//   - Requests are idempotent reads and are retried by the backend itself
//     (Options.MaxAttempts, exponential backoff with jitter); callers do not
//     add their own retry loop around a single call.
//   - The context's deadline is the deadline of the whole operation,
//     retries, backoff, a server's Retry-After and GetRange's resumptions
//     included: each attempt waits for headers at most
//     min(Options.RequestTimeout, time left), and a wait that would end
//     after the deadline is not started. The error then wraps both
//     context.DeadlineExceeded and the cause of the last failure (the HTTP
//     status, ErrTimeout, ...), and comes at once rather than at the
//     deadline.
//   - Nothing hangs: response headers are bounded by Options.RequestTimeout
//     per attempt; a body Read that makes no progress for
//     Options.StallTimeout, or body Reads that deliver less than
//     Options.MinRate over Options.RateWindow of time spent reading (a
//     trickling server), fail with ErrStalled. A body that ends before its
//     announced length fails with io.ErrUnexpectedEOF, never a short success.
type Backend interface {
	// Get returns the whole object, not decoded.
	Get(ctx context.Context, key string) (*Object, error)
	// GetRange returns exactly n bytes starting at off, or an error (a
	// range beyond the end is ErrRange). The bytes are those of the stored
	// object, before any Content-Encoding is removed.
	GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error)
	// Stat returns the size and encoding of an object.
	Stat(ctx context.Context, key string) (Info, error)
	// List calls fn for every top-level key ending in suffix (no
	// "directories", like Nix's queryAllValidPaths), in no particular
	// order. It returns ErrUnsupported where listing is impossible (http),
	// and ErrListing for a listing that does not end (a repeated S3
	// continuation token, more than maxListPages pages or maxListKeys
	// entries): the keys passed to fn until then are real, but not all.
	// An error from fn stops the listing and is returned as is.
	List(ctx context.Context, suffix string, fn func(key string) error) error
	// String is the redacted store URL: scheme, host/bucket and path, no
	// credentials and no query.
	String() string
	Close() error
}

// Listing bounds. A listing names the cache's top-level keys: per store
// path a .narinfo and usually a .ls, and the nar/ and index/ directories
// as one entry each. maxListKeys (100 million keys, 50 million store
// paths) is far above any cache a mount or `narfs verify --all` lists in
// one go, yet makes a server that never ends its listing (S3 answering
// "truncated" for ever, with fresh tokens) cost a bounded number of
// requests: maxListPages at S3's 1,000 keys a page, about 80 s at the
// 1,200 pages a second a local server answers. A repeated continuation
// token ends it at once; a mount's root listing ends at --timeout.
const (
	maxListKeys  = 100_000_000
	maxListPages = maxListKeys / 1000
)

// DefaultMinRate is Options.MinRate's default: 64 KiB/s.
const DefaultMinRate = 64 << 10

// Options tune every backend. The zero value is usable.
type Options struct {
	// RequestTimeout bounds each attempt up to the response headers
	// (default 30s). The caller's context deadline, if sooner, bounds it
	// too; it covers the whole operation.
	RequestTimeout time.Duration
	// StallTimeout fails a body Read that makes no progress for this long
	// (default 30s). Time the caller spends between Reads does not count.
	StallTimeout time.Duration
	// MinRate is the slowest a body may be, in bytes per second of time
	// spent inside Read (default 64 KiB/s; negative disables it). Reads
	// that deliver less than MinRate*RateWindow bytes within RateWindow
	// fail with ErrStalled, so a server trickling a byte at a time cannot
	// block a reader forever. A body that completes within RateWindow is
	// never judged.
	MinRate int64
	// RateWindow is the span MinRate is measured over (default 5s, and
	// never more than StallTimeout).
	RateWindow time.Duration
	// MaxAttempts per request, first try included (default 5, or the store
	// URL's retry-attempts).
	MaxAttempts int
	// RetryBaseDelay is the first backoff (default 250ms like Nix, or the
	// store URL's retry-delay in ms); attempt k waits
	// base * 2^(k-1+U[0,0.5)), capped at RetryMaxDelay.
	RetryBaseDelay time.Duration
	// RetryMaxDelay caps one backoff, including a server's Retry-After
	// (default 30s).
	RetryMaxDelay time.Duration
	Logger        *slog.Logger
	// NetrcPath is used for http(s) basic auth (default $NETRC, else
	// ~/.netrc). A missing file is not an error.
	NetrcPath string
	// HTTPClient replaces the default client (tests inject fault-injecting
	// transports here). Timeouts and stall detection are still applied.
	HTTPClient *http.Client
}

// withDefaults fills the zero fields, taking retry settings from the store
// URL when the caller left them unset.
func (o Options) withDefaults(u *StoreURL) Options {
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 30 * time.Second
	}
	if o.StallTimeout <= 0 {
		o.StallTimeout = 30 * time.Second
	}
	if o.MinRate == 0 {
		o.MinRate = DefaultMinRate
	}
	if o.RateWindow <= 0 {
		o.RateWindow = 5 * time.Second
	}
	o.RateWindow = min(o.RateWindow, o.StallTimeout)
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 5
		if v, err := strconv.Atoi(u.Params.Get("retry-attempts")); err == nil && v > 0 {
			o.MaxAttempts = v
		}
	}
	if o.RetryBaseDelay <= 0 {
		o.RetryBaseDelay = 250 * time.Millisecond
		if v, err := strconv.Atoi(u.Params.Get("retry-delay")); err == nil && v > 0 {
			o.RetryBaseDelay = time.Duration(v) * time.Millisecond
		}
	}
	if o.RetryMaxDelay <= 0 {
		o.RetryMaxDelay = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.NetrcPath == "" {
		if p := os.Getenv("NETRC"); p != "" {
			o.NetrcPath = p
		} else if home, err := os.UserHomeDir(); err == nil {
			o.NetrcPath = filepath.Join(home, ".netrc")
		}
	}
	return o
}

// Open returns the backend for u.
func Open(ctx context.Context, u *StoreURL, opts Options) (Backend, error) {
	opts = opts.withDefaults(u)
	switch u.Scheme {
	case "file":
		return openFile(u, opts)
	case "http", "https":
		return openHTTP(u, opts)
	case "s3":
		return openS3(ctx, u, opts)
	}
	return nil, fmt.Errorf("%s: unsupported store scheme %q", u, u.Scheme)
}

// Writer is implemented by the backends that can store objects (file,
// s3, and http where the server accepts PUT); Open's result can be
// type-asserted to it. Writers are used by narfs push and narfs index,
// never by a mount.
type Writer interface {
	// Put stores exactly size bytes read from r at key, replacing any
	// object there. The object appears whole or not at all: file writes a
	// temporary "<key>.tmp.<pid>.<n>" and renames it; s3 uses one PUT or a
	// multipart upload that is aborted on any failure, so no orphan parts
	// remain; http PUTs. contentType may be "". A reader yielding fewer or
	// more than size bytes fails the Put. The context's deadline bounds the
	// whole upload, retries included.
	Put(ctx context.Context, key string, r io.Reader, size int64, contentType string) error
	// Delete removes key; a missing key is not an error.
	Delete(ctx context.Context, key string) error
}
