package backend

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

func (b *s3Backend) Get(ctx context.Context, key string) (*Object, error) {
	if err := checkS3Key(key); err != nil {
		return nil, b.errorf("get", key, err)
	}
	ctx, opt, explain := b.deadline(ctx)
	in := &s3.GetObjectInput{Bucket: &b.bucket, Key: &key}
	out, err := b.client().GetObject(ctx, in, opt)
	if b.learnRegion(err) {
		out, err = b.client().GetObject(ctx, in, opt)
	}
	if err != nil {
		return nil, b.errorf("get", key, mapS3Error(explain(err)))
	}
	return &Object{
		Body:            &namedBody{rc: out.Body, prefix: fmt.Sprintf("%s: get %s", b, key)},
		Size:            sizeOrUnknown(out.ContentLength),
		ContentEncoding: aws.ToString(out.ContentEncoding),
	}, nil
}

// Stat uses a one-byte ranged GET rather than HEAD: a HEAD error has no
// body, so a bad key (403, or versitygw's 404 for an unknown access key)
// could not be told from a missing object. Content-Range carries the size.
func (b *s3Backend) Stat(ctx context.Context, key string) (Info, error) {
	if err := checkS3Key(key); err != nil {
		return Info{}, b.errorf("stat", key, err)
	}
	rng := "bytes=0-0"
	cctx, opt, explain := b.deadline(ctx)
	in := &s3.GetObjectInput{Bucket: &b.bucket, Key: &key, Range: &rng}
	out, err := b.client().GetObject(cctx, in, opt)
	if b.learnRegion(err) {
		out, err = b.client().GetObject(cctx, in, opt)
	}
	if err != nil {
		err = mapS3Error(explain(err))
		if errors.Is(err, ErrRange) {
			// Only an empty object has no byte 0.
			return b.head(ctx, key)
		}
		return Info{}, b.errorf("stat", key, err)
	}
	out.Body.Close()
	_, _, total, err := parseContentRange(aws.ToString(out.ContentRange))
	if err != nil {
		return Info{}, b.errorf("stat", key, err)
	}
	return Info{Size: total, ContentEncoding: aws.ToString(out.ContentEncoding)}, nil
}

func (b *s3Backend) head(ctx context.Context, key string) (Info, error) {
	ctx, opt, explain := b.deadline(ctx)
	in := &s3.HeadObjectInput{Bucket: &b.bucket, Key: &key}
	out, err := b.client().HeadObject(ctx, in, opt)
	if b.learnRegion(err) {
		out, err = b.client().HeadObject(ctx, in, opt)
	}
	if err != nil {
		return Info{}, b.errorf("stat", key, mapS3Error(explain(err)))
	}
	return Info{Size: sizeOrUnknown(out.ContentLength), ContentEncoding: aws.ToString(out.ContentEncoding)}, nil
}

func (b *s3Backend) GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if err := checkS3Key(key); err != nil {
		return nil, b.errorf("get", key, err)
	}
	if err := checkRange(off, n); err != nil {
		return nil, b.errorf("get", key, err)
	}
	return getRangeResuming(ctx, b, b.rangeOnce, key, off, n)
}

func (b *s3Backend) rangeOnce(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	if n == 0 {
		info, err := b.Stat(ctx, key)
		if err != nil {
			return nil, err
		}
		if off > info.Size {
			return nil, b.errorf("get", key, fmt.Errorf("%w: offset %d beyond size %d", ErrRange, off, info.Size))
		}
		return io.NopCloser(strings.NewReader("")), nil
	}
	rng := fmt.Sprintf("bytes=%d-%d", off, off+n-1)
	ctx, opt, explain := b.deadline(ctx)
	in := &s3.GetObjectInput{Bucket: &b.bucket, Key: &key, Range: &rng}
	out, err := b.client().GetObject(ctx, in, opt)
	if b.learnRegion(err) {
		out, err = b.client().GetObject(ctx, in, opt)
	}
	if err != nil {
		return nil, b.errorf("get", key, mapS3Error(explain(err)))
	}
	if ce := aws.ToString(out.ContentEncoding); strictRanges(ctx) && ce != "" && !strings.EqualFold(ce, "identity") {
		out.Body.Close()
		return nil, b.errorf("get", key, fmt.Errorf("%w: object has Content-Encoding %q", ErrUnsupported, ce))
	}
	// S3 clips a range that runs past the end; the caller asked for
	// exactly n bytes.
	start, end, _, err := parseContentRange(aws.ToString(out.ContentRange))
	if err != nil || start != off || end != off+n-1 {
		out.Body.Close()
		return nil, b.errorf("get", key, fmt.Errorf("%w: asked bytes %d-%d, got Content-Range %q",
			ErrRange, off, off+n-1, aws.ToString(out.ContentRange)))
	}
	return &namedBody{rc: &exactReader{r: out.Body, c: out.Body, left: n}, prefix: fmt.Sprintf("%s: get %s", b, key)}, nil
}

// List reads ListObjectsV2 pages itself rather than with the SDK's
// paginator, which follows a continuation token for ever (or, with
// StopOnDuplicateToken, stops silently as if the listing were complete).
// A server that repeats a token (any earlier one: a cycle of any length)
// or needs more than maxListPages pages fails the listing with
// ErrListing. The context bounds the whole listing; each page request
// gets the usual retries within it.
func (b *s3Backend) List(ctx context.Context, suffix string, fn func(string) error) error {
	in := &s3.ListObjectsV2Input{Bucket: &b.bucket, Delimiter: aws.String("/")}
	seen := map[[sha256.Size]byte]struct{}{}
	for pages := 1; ; pages++ {
		pctx, opt, explain := b.deadline(ctx)
		page, err := b.client().ListObjectsV2(pctx, in, opt)
		if err != nil {
			return fmt.Errorf("%s: list: page %d: %w", b, pages, mapS3Error(explain(err)))
		}
		for _, o := range page.Contents {
			k := aws.ToString(o.Key)
			if !strings.HasSuffix(k, suffix) || strings.Contains(k, "/") {
				continue
			}
			if err := fn(k); err != nil {
				return err
			}
		}
		if !aws.ToBool(page.IsTruncated) {
			return nil
		}
		tok := aws.ToString(page.NextContinuationToken)
		if tok == "" {
			return fmt.Errorf("%s: list: page %d: %w: truncated without a continuation token", b, pages, ErrListing)
		}
		// Tokens are opaque and may be long: remember their digests.
		sum := sha256.Sum256([]byte(tok))
		if _, ok := seen[sum]; ok {
			return fmt.Errorf("%s: list: page %d: %w: continuation token %.40q was already followed", b, pages, ErrListing, tok)
		}
		if pages >= maxListPages {
			return fmt.Errorf("%s: list: %w: more than %d pages", b, ErrListing, maxListPages)
		}
		seen[sum] = struct{}{}
		in.ContinuationToken = &tok
	}
}

// sizeOrUnknown maps a missing or negative (hostile, or from an injected
// transport) length to -1, the documented "unknown".
func sizeOrUnknown(n *int64) int64 {
	if n == nil || *n < 0 {
		return -1
	}
	return *n
}
