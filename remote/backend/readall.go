package backend

import (
	"bytes"
	"compress/zlib"
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/narfs/narfs/nar/compress"
)

// ReadAll reads a small object (narinfo, .ls, nix-cache-info) and removes
// its Content-Encoding: br, zstd, gzip, x-gzip, deflate, xz, bzip2 or
// identity, and comma-separated stacks of them. More than max decoded bytes
// is an error wrapping ErrTooLarge; so is more than max encoded bytes.
func ReadAll(ctx context.Context, b Backend, key string, max int64) ([]byte, error) {
	obj, err := b.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	defer obj.Body.Close()
	fail := func(err error) ([]byte, error) {
		return nil, fmt.Errorf("%s: get %s: %w", b, keyName(key), err)
	}
	if obj.Size > max {
		return fail(fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, obj.Size, max))
	}
	raw, err := io.ReadAll(io.LimitReader(obj.Body, max+1))
	if err != nil {
		return fail(err)
	}
	if int64(len(raw)) > max {
		return fail(fmt.Errorf("%w: more than %d bytes", ErrTooLarge, max))
	}
	out, err := decodeContent(obj.ContentEncoding, raw, max)
	if err != nil {
		return fail(err)
	}
	return out, nil
}

// decodeContent removes the encodings listed in enc, last applied first.
func decodeContent(enc string, data []byte, max int64) ([]byte, error) {
	codings := strings.Split(enc, ",")
	for i := len(codings) - 1; i >= 0; i-- {
		c := strings.ToLower(strings.TrimSpace(codings[i]))
		if c == "" || c == "identity" {
			continue
		}
		r, err := codingReader(c, bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("Content-Encoding %q: %w", c, err)
		}
		out, err := io.ReadAll(io.LimitReader(r, max+1))
		r.Close()
		if err != nil {
			return nil, fmt.Errorf("Content-Encoding %q: %w", c, err)
		}
		if int64(len(out)) > max {
			return nil, fmt.Errorf("%w: more than %d bytes after Content-Encoding %q", ErrTooLarge, max, c)
		}
		data = out
	}
	return data, nil
}

// codingReader removes one content coding (lower case, not identity).
func codingReader(c string, r io.Reader) (io.ReadCloser, error) {
	if c == "deflate" {
		// HTTP "deflate" is zlib-wrapped (RFC 9110 §8.4.1.2); the compress
		// package does not cover it.
		return zlib.NewReader(r)
	}
	return compress.NewReader(c, r)
}

// NewContentDecoder streams r with the Content-Encoding enc removed (the
// codings ReadAll accepts, last applied first), for bodies too large to
// buffer such as NARs a server sends with a transport encoding. "" and
// identity give r back as is. Close releases the decoders, not r.
func NewContentDecoder(enc string, r io.Reader) (io.ReadCloser, error) {
	stack := &decoderStack{Reader: r}
	codings := strings.Split(enc, ",")
	for i := len(codings) - 1; i >= 0; i-- {
		c := strings.ToLower(strings.TrimSpace(codings[i]))
		if c == "" || c == "identity" {
			continue
		}
		d, err := codingReader(c, stack.Reader)
		if err != nil {
			stack.Close()
			return nil, fmt.Errorf("Content-Encoding %q: %w", c, err)
		}
		stack.Reader, stack.decoders = d, append(stack.decoders, d)
	}
	return stack, nil
}

// decoderStack reads through nested decoders and closes them outermost
// first.
type decoderStack struct {
	io.Reader
	decoders []io.ReadCloser
}

func (d *decoderStack) Close() error {
	for i := len(d.decoders) - 1; i >= 0; i-- {
		d.decoders[i].Close()
	}
	return nil
}
