// Package linkshape is an HTTP reverse proxy that gives loopback servers
// the shape of a real link, so that cold-cache figures measured in tests
// and benchmarks are not loopback's (no latency, gigabytes per second).
//
// # What it models
//
// Object storage and CDNs behave per request: each request waits for its
// first byte, then its body streams at a rate that is the same for every
// connection, and N parallel requests get about N times the bandwidth.
// A [Profile] says exactly that:
//
//   - TTFB: every response is held for TTFB after the upstream has answered
//     its headers, before the headers reach the client. The first byte thus
//     arrives at least TTFB after the upstream's own answer, whatever that
//     took (on loopback, nothing).
//   - Rate: every response body, and every request body (PUT), is paced
//     by a token bucket of its own at Rate bytes per second. A body runs
//     ahead of its rate by at most 64 KiB (at its start, or after its reader
//     paused) plus 2 ms worth: pacing sleeps are at least 2 ms, since Go's
//     timers overshoot shorter ones by up to a millisecond on a busy
//     machine. Over a whole body the rate is met within a few percent (9 MB
//     at 90 MB/s: 105 to 110 ms for the ideal 99 on a loaded 2-CPU box).
//   - Total (optional): a shared bucket caps all response bodies together,
//     and another all request bodies together, as a line of that capacity
//     would. 0, the default, is no shared cap.
//
// # Limits
//
// It does not model packet loss, TCP slow start, jitter, a round-trip per
// connection set-up or per TLS handshake, nor the time the request
// headers take to go up: the whole latency of an exchange is the one TTFB.
// Without Total the aggregate bandwidth is unbounded, as if the client's
// own line were never the bottleneck. Pacing works on the proxy's side of
// the loopback socket, so the client's kernel buffers may hold a few
// hundred KiB the client has not read yet; the client still cannot read
// faster than Rate over any span longer than a few milliseconds.
//
// # Addressing it
//
// The proxy listens on http://127.0.0.1:PORT (see [Proxy.URL]) and
// forwards every method, path, query and header, Range included, to the
// upstream. By default it forwards the Host header the client sent,
// which is the proxy's own address: S3 SigV4 signs the Host, so an S3
// client is simply given the proxy's URL as its endpoint (path-style
// addressing, as narfs uses for custom endpoints) and its signature stays
// valid upstream; versitygw accepts it. [WithUpstreamHost] sends the
// upstream's host instead, for name-based virtual hosts and CDNs.
package linkshape
