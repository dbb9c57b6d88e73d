package linkshape

import (
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

var errClosed = errors.New("linkshape: proxy closed")

// Option changes how Start's proxy forwards.
type Option func(*options)

type options struct {
	upstreamHost bool
}

// WithUpstreamHost makes the proxy send the upstream's host in the Host
// header instead of the one the client sent (the proxy's address). Use it
// for name-based virtual hosts and CDNs (cache.nixos.org); never for S3,
// whose signatures cover the Host the client sent.
func WithUpstreamHost() Option { return func(o *options) { o.upstreamHost = true } }

// Proxy is a running shaping reverse proxy. Its methods are safe for
// concurrent use.
type Proxy struct {
	profile   Profile
	url       string
	srv       *http.Server
	transport *http.Transport
	stop      chan struct{}
	down, up  *bucket // shared Total caps of response and request bodies; nil if none

	requests  atomic.Int64
	bytesSent atomic.Int64
	bytesRecv atomic.Int64

	mu        sync.Mutex
	closed    bool           // under mu; no handler starts once set
	handlers  sync.WaitGroup // in-flight handlers; Add only under mu before closed
	served    chan struct{}  // closed when Serve has returned
	closeOnce sync.Once
	closeErr  error
}

// Start listens on a free port of 127.0.0.1 and forwards every request to
// upstream (a base URL such as http://127.0.0.1:9000; a path in it is
// prefixed to every request's path), shaped by p. The caller must Close
// the proxy.
func Start(upstream string, p Profile, opts ...Option) (*Proxy, error) {
	if p.TTFB < 0 || p.Rate < 0 || p.Total < 0 {
		return nil, fmt.Errorf("linkshape: profile %v has a negative figure", p)
	}
	target, err := url.Parse(upstream)
	if err != nil {
		return nil, fmt.Errorf("linkshape: upstream: %w", err)
	}
	if (target.Scheme != "http" && target.Scheme != "https") || target.Host == "" {
		return nil, fmt.Errorf("linkshape: upstream %q: want http:// or https://host[:port]", upstream)
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("linkshape: %w", err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	// Hand on Content-Encoding as the upstream sent it; by default the
	// transport would ask for gzip itself and decode it behind our back.
	tr.DisableCompression = true
	tr.MaxIdleConnsPerHost = 256
	px := &Proxy{
		profile:   p,
		url:       "http://" + l.Addr().String(),
		transport: tr,
		stop:      make(chan struct{}),
		down:      newBucket(p.Total),
		up:        newBucket(p.Total),
		served:    make(chan struct{}),
	}
	quiet := log.New(io.Discard, "", 0)
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			if !o.upstreamHost {
				r.Out.Host = r.In.Host
			}
			if r.Out.Body != nil && r.Out.Body != http.NoBody {
				r.Out.Body = &pacedBody{
					rc: r.Out.Body, ctx: r.In.Context(), stop: px.stop,
					own: newBucket(p.Rate), shared: px.up, count: &px.bytesRecv,
				}
			}
		},
		Transport:     tr,
		FlushInterval: -1, // hand on each paced chunk at once
		ErrorLog:      quiet,
		ModifyResponse: func(resp *http.Response) error {
			if err := sleep(resp.Request.Context(), px.stop, p.TTFB); err != nil {
				return err
			}
			if resp.StatusCode == http.StatusSwitchingProtocols {
				return nil // an upgraded connection is not a body; left unshaped
			}
			resp.Body = &pacedBody{
				rc: resp.Body, ctx: resp.Request.Context(), stop: px.stop,
				own: newBucket(p.Rate), shared: px.down, count: &px.bytesSent,
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			select {
			case <-px.stop:
				// Closing: cut the connection rather than answer a 502
				// the client could take for the upstream's.
				panic(http.ErrAbortHandler)
			default:
			}
			http.Error(w, "linkshape: "+err.Error(), http.StatusBadGateway)
		},
	}
	px.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			px.mu.Lock()
			if px.closed {
				px.mu.Unlock()
				panic(http.ErrAbortHandler) // cut the connection
			}
			px.handlers.Add(1)
			px.mu.Unlock()
			defer px.handlers.Done()
			px.requests.Add(1)
			rp.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          quiet,
	}
	go func() {
		defer close(px.served)
		px.srv.Serve(l)
	}()
	return px, nil
}

// URL is the proxy's base URL, http://127.0.0.1:PORT.
func (px *Proxy) URL() string { return px.url }

// Profile is the profile the proxy shapes by.
func (px *Proxy) Profile() Profile { return px.profile }

// Stats says how many requests the proxy has taken and how many response
// body bytes it has handed on to clients.
func (px *Proxy) Stats() (requests, bytesSent int64) {
	return px.requests.Load(), px.bytesSent.Load()
}

// BytesReceived is how many request body bytes (PUT, POST) the proxy has
// handed on to the upstream.
func (px *Proxy) BytesReceived() int64 { return px.bytesRecv.Load() }

// Close stops the listener, aborts every exchange in flight (their clients
// see an error: a cut connection or a short body), and returns once every
// handler has returned. Calling it again returns the first result.
func (px *Proxy) Close() error {
	px.closeOnce.Do(func() {
		px.mu.Lock()
		px.closed = true
		px.mu.Unlock()
		close(px.stop) // wakes every TTFB wait and pacing sleep
		px.closeErr = px.srv.Close()
		<-px.served
		px.handlers.Wait()
		px.transport.CloseIdleConnections()
	})
	return px.closeErr
}
