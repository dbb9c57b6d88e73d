package backend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// httpBackend serves http(s)://HOST[/PREFIX]. Keys are resolved as RFC 3986
// references against "<store URL>/" (a query string in the key is kept, as
// Nix does); a key that is itself an absolute http(s) URL is used verbatim.
type httpBackend struct {
	// All fields are read-only after openHTTP.
	name   string
	base   *url.URL      // store URL with a trailing slash, no userinfo
	user   *url.Userinfo // basic auth from the store URL, for base's host only
	netrc  *netrcFile
	client *http.Client
	opts   Options
	log    *slog.Logger
}

// newHTTPTransport is the default transport: a keep-alive pool sized for
// many parallel NAR reads, and no transparent gzip, because we report the
// server's Content-Encoding and decode it ourselves.
func newHTTPTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 256
	t.MaxIdleConnsPerHost = 64
	t.DisableCompression = true
	t.IdleConnTimeout = 90 * time.Second
	return t
}

// guardedClient copies c and wraps its transport with the timeout and
// stall guards.
func guardedClient(c *http.Client, opts Options) *http.Client {
	var out http.Client
	if c != nil {
		out = *c
	}
	base := out.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	out.Transport = &guardTransport{
		base:          base,
		headerTimeout: opts.RequestTimeout,
		stallTimeout:  opts.StallTimeout,
		minRate:       opts.MinRate,
		rateWindow:    opts.RateWindow,
	}
	return &out
}

func openHTTP(u *StoreURL, opts Options) (*httpBackend, error) {
	name := u.base()
	base, err := url.Parse(u.Scheme + "://" + u.Host + u.Path + "/")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	base.User = nil
	hc := opts.HTTPClient
	if hc == nil {
		certs, err := clientCertificates(u)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		t := newHTTPTransport()
		applyClientCerts(t, certs)
		hc = &http.Client{Transport: t}
	}
	nrc, err := loadNetrc(opts.NetrcPath)
	if err != nil {
		// A broken netrc must not stop a public cache from working.
		opts.Logger.Warn("ignoring unreadable netrc", "cache", name, "err", err)
		nrc = nil
	}
	return &httpBackend{
		name:   name,
		base:   base,
		user:   u.user,
		netrc:  nrc,
		client: guardedClient(hc, opts),
		opts:   opts,
		log:    opts.Logger,
	}, nil
}

func (b *httpBackend) String() string { return b.name }

func (b *httpBackend) Close() error {
	b.client.CloseIdleConnections()
	return nil
}

// resolve maps a key to a request URL.
func (b *httpBackend) resolve(key string) (*url.URL, error) {
	if key == "" {
		return nil, fmt.Errorf("%w: empty key", ErrInvalidKey)
	}
	ref, err := url.Parse(key)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidKey, err)
	}
	switch ref.Scheme {
	case "":
		return b.base.ResolveReference(ref), nil
	case "http", "https":
		if ref.Host == "" {
			return nil, fmt.Errorf("%w: URL without host", ErrInvalidKey)
		}
		return ref, nil
	}
	return nil, fmt.Errorf("%w: unsupported URL scheme %q", ErrInvalidKey, ref.Scheme)
}

// keyName is how errors show a key: an absolute URL loses its userinfo.
func keyName(key string) string {
	if u, err := url.Parse(key); err == nil && u.User != nil {
		return u.Redacted()
	}
	return key
}

func (b *httpBackend) errorf(op, key string, err error) error {
	return fmt.Errorf("%s: %s %s: %w", b, op, keyName(key), err)
}

func (b *httpBackend) auth(req *http.Request) {
	if b.user != nil && req.URL.Host == b.base.Host {
		pw, _ := b.user.Password()
		req.SetBasicAuth(b.user.Username(), pw)
		return
	}
	if e, ok := b.netrc.lookup(req.URL.Hostname()); ok {
		req.SetBasicAuth(e.login, e.password)
	}
}

// statusError classifies a non-2xx response.
func statusError(resp *http.Response) error {
	st := fmt.Sprintf("HTTP %s", resp.Status)
	switch c := resp.StatusCode; {
	case c == 404 || c == 403 || c == 410:
		return fmt.Errorf("%w (%s)", ErrNotFound, st)
	case c == 401 || c == 407:
		return fmt.Errorf("%w (%s)", ErrAuth, st)
	case c == 416:
		return fmt.Errorf("%w (%s)", ErrRange, st)
	case c >= 500 || c == 429 || c == 408:
		return &retryableErr{errors.New(st)}
	}
	return errors.New(st)
}

// do performs one idempotent request with retries and returns a 2xx
// response.
func (b *httpBackend) do(ctx context.Context, method, key string, hdr http.Header) (*http.Response, error) {
	u, err := b.resolve(key)
	if err != nil {
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, method, u.String(), nil)
		if err != nil {
			return nil, err
		}
		for k, v := range hdr {
			req.Header[k] = v
		}
		b.auth(req)
		resp, err := b.client.Do(req)
		var wait time.Duration
		if err == nil {
			if resp.StatusCode/100 == 2 {
				return resp, nil
			}
			err = statusError(resp)
			wait = retryAfter(resp.Header, time.Now())
			drain(resp.Body)
		} else {
			if cerr := ctx.Err(); cerr != nil {
				if errors.Is(cerr, context.DeadlineExceeded) {
					// guardTransport already says ErrTimeout when
					// the deadline cut the headers short.
					return nil, atDeadline(fmt.Errorf("attempt %d: %w", attempt, err))
				}
				return nil, context.Cause(ctx)
			}
			err = transportError(err)
		}
		if !isRetryable(err) {
			return nil, err
		}
		if attempt >= b.opts.MaxAttempts {
			return nil, fmt.Errorf("giving up after %d attempts: %w", attempt, err)
		}
		// A Retry-After longer than the time left before the caller's
		// deadline is not honoured by waiting: sleepBeforeRetry fails
		// at once with the server's answer.
		if d := backoff(b.opts.RetryBaseDelay, b.opts.RetryMaxDelay, attempt); wait < d {
			wait = d
		}
		wait = min(wait, b.opts.RetryMaxDelay)
		b.log.Debug("retrying request", "cache", b.name, "key", keyName(key), "attempt", attempt, "wait", wait, "err", err)
		if err := sleepBeforeRetry(ctx, wait, fmt.Errorf("attempt %d: %w", attempt, err)); err != nil {
			return nil, err
		}
	}
}

// transportError marks errors from the connection as retryable. url.Error
// strips nothing from a URL without userinfo, which is all we send.
func transportError(err error) error {
	var ne net.Error
	var ue *url.Error
	if errors.As(err, &ne) || errors.As(err, &ue) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return &retryableErr{err}
	}
	return err
}

// drain lets the connection be reused after an error response.
func drain(rc io.ReadCloser) {
	io.Copy(io.Discard, io.LimitReader(rc, 64<<10))
	rc.Close()
}

func (b *httpBackend) Get(ctx context.Context, key string) (*Object, error) {
	resp, err := b.do(ctx, http.MethodGet, key, nil)
	if err != nil {
		return nil, b.errorf("get", key, err)
	}
	return &Object{
		Body:            &namedBody{rc: resp.Body, prefix: b.errorPrefix("get", key)},
		Size:            sizeOrUnknown(&resp.ContentLength),
		ContentEncoding: resp.Header.Get("Content-Encoding"),
	}, nil
}

func (b *httpBackend) Stat(ctx context.Context, key string) (Info, error) {
	resp, err := b.do(ctx, http.MethodHead, key, nil)
	if err != nil {
		return Info{}, b.errorf("stat", key, err)
	}
	resp.Body.Close()
	return Info{Size: sizeOrUnknown(&resp.ContentLength), ContentEncoding: resp.Header.Get("Content-Encoding")}, nil
}

func (b *httpBackend) List(ctx context.Context, suffix string, fn func(string) error) error {
	return fmt.Errorf("%s: list: %w (HTTP has no directory listing)", b, ErrUnsupported)
}

func (b *httpBackend) GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if err := checkRange(off, n); err != nil {
		return nil, b.errorf("get", key, err)
	}
	return getRangeResuming(ctx, b, b.rangeOnce, key, off, n)
}

// rangeOnce issues one Range request (with the usual retries before the
// headers) and returns a reader of exactly n bytes.
func (b *httpBackend) rangeOnce(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if n == 0 {
		return b.emptyRange(ctx, key, off)
	}
	hdr := http.Header{"Range": {fmt.Sprintf("bytes=%d-%d", off, off+n-1)}}
	resp, err := b.do(ctx, http.MethodGet, key, hdr)
	if err != nil {
		return nil, b.errorf("get", key, err)
	}
	body := io.ReadCloser(resp.Body)
	ce := resp.Header.Get("Content-Encoding")
	if resp.StatusCode == http.StatusOK && (ce == "" || strings.EqualFold(ce, "identity")) &&
		offerWhole(ctx, &namedBody{rc: body, prefix: b.errorPrefix("get", key)}) {
		// The caller reads the object from this answer (GetRangeOrWhole).
		return nil, b.errorf("get", key, fmt.Errorf("%w (%s)", ErrWholeAnswer, resp.Status))
	}
	if strictRanges(ctx) {
		if resp.StatusCode != http.StatusPartialContent {
			body.Close()
			return nil, b.errorf("get", key, fmt.Errorf("%w: server answered %s to a range request", ErrUnsupported, resp.Status))
		}
		if ce != "" && !strings.EqualFold(ce, "identity") {
			body.Close()
			return nil, b.errorf("get", key, fmt.Errorf("%w: range answered with Content-Encoding %q", ErrUnsupported, ce))
		}
	}
	switch resp.StatusCode {
	case http.StatusPartialContent:
		start, end, _, err := parseContentRange(resp.Header.Get("Content-Range"))
		if err != nil || start != off || end != off+n-1 {
			body.Close()
			return nil, b.errorf("get", key, fmt.Errorf("%w: asked bytes %d-%d, server sent Content-Range %q",
				ErrRange, off, off+n-1, resp.Header.Get("Content-Range")))
		}
	case http.StatusOK:
		// The server ignored Range: skip to off and cut at n.
		if resp.ContentLength >= 0 && resp.ContentLength < off+n {
			body.Close()
			return nil, b.errorf("get", key, fmt.Errorf("%w: bytes %d-%d of %d", ErrRange, off, off+n, resp.ContentLength))
		}
		b.log.Debug("server ignored Range; skipping", "cache", b.name, "key", keyName(key), "skip", off)
		if _, err := io.CopyN(io.Discard, body, off); err != nil {
			body.Close()
			if err == io.EOF {
				err = fmt.Errorf("%w: object shorter than offset %d", ErrRange, off)
			}
			return nil, b.errorf("get", key, err)
		}
		// A clean EOF before off+n means the object is shorter than
		// the range (a cut connection is io.ErrUnexpectedEOF instead).
		short := fmt.Errorf("%w: object ends before byte %d", ErrRange, off+n)
		return &namedBody{rc: &exactReader{r: body, c: body, left: n, short: short}, prefix: b.errorPrefix("get", key)}, nil
	default:
		body.Close()
		return nil, b.errorf("get", key, fmt.Errorf("unexpected %s to a range request", resp.Status))
	}
	return &namedBody{rc: &exactReader{r: body, c: body, left: n}, prefix: b.errorPrefix("get", key)}, nil
}

// emptyRange checks that off is within the object for a zero-length range.
func (b *httpBackend) emptyRange(ctx context.Context, key string, off int64) (io.ReadCloser, error) {
	info, err := b.Stat(ctx, key)
	if err != nil {
		return nil, err
	}
	if info.Size >= 0 && off > info.Size {
		return nil, b.errorf("get", key, fmt.Errorf("%w: offset %d beyond size %d", ErrRange, off, info.Size))
	}
	return io.NopCloser(strings.NewReader("")), nil
}

func (b *httpBackend) errorPrefix(op, key string) string {
	return fmt.Sprintf("%s: %s %s", b, op, keyName(key))
}

// parseContentRange parses "bytes START-END/TOTAL" (TOTAL may be "*",
// returned as -1).
func parseContentRange(v string) (start, end, total int64, err error) {
	bad := fmt.Errorf("bad Content-Range %q", v)
	rest, ok := strings.CutPrefix(v, "bytes ")
	if !ok {
		return 0, 0, 0, bad
	}
	rng, tot, ok := strings.Cut(rest, "/")
	if !ok {
		return 0, 0, 0, bad
	}
	s, e, ok := strings.Cut(rng, "-")
	if !ok {
		return 0, 0, 0, bad
	}
	if start, err = parseDigits(s); err != nil {
		return 0, 0, 0, bad
	}
	if end, err = parseDigits(e); err != nil || end < start {
		return 0, 0, 0, bad
	}
	total = -1
	if tot != "*" {
		if total, err = parseDigits(tot); err != nil || total <= end {
			return 0, 0, 0, bad
		}
	}
	return start, end, total, nil
}

// parseDigits parses 1*DIGIT into a non-negative int64. ParseInt alone
// would also take a sign ("+5", "-0"); a value beyond int64 is an error,
// never a wrapped number.
func parseDigits(v string) (int64, error) {
	if v == "" || strings.TrimLeft(v, "0123456789") != "" {
		return 0, fmt.Errorf("not a number: %q", v)
	}
	return strconv.ParseInt(v, 10, 64)
}

// namedBody prefixes body read errors with the cache and key, so a stall
// deep inside a NAR read still says where it happened.
type namedBody struct {
	rc     io.ReadCloser
	prefix string
}

func (n *namedBody) Read(p []byte) (int, error) {
	c, err := n.rc.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("%s: %w", n.prefix, err)
	}
	return c, err
}

func (n *namedBody) Close() error { return n.rc.Close() }
