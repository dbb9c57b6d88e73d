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

func (b *httpBackend) errorPrefix(op, key string) string {
	return fmt.Sprintf("%s: %s %s", b, op, keyName(key))
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
