package backend

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

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
