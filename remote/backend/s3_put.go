package backend

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
)

// s3 multipart settings. Objects of s3MultipartThreshold bytes or more go
// as a multipart upload of s3PartSize parts (S3's minimum is 5 MiB),
// s3PartConcurrency at a time; each upload buffers about
// (s3PartConcurrency+1) parts plus the first threshold's worth.
const (
	s3PartSize           = 8 << 20
	s3MultipartThreshold = 16 << 20
	s3PartConcurrency    = 4
)

// Put uploads through the AWS transfer manager: one PutObject below
// s3MultipartThreshold, else a multipart upload whose parts are buffered
// (so each is retried by the SDK like any request) and which is aborted
// if anything fails, so no orphan parts are left to be billed. The
// abort gets a fresh RequestTimeout even when ctx's deadline is what
// ended the upload.
func (b *s3Backend) Put(ctx context.Context, key string, r io.Reader, size int64, contentType string) error {
	if err := checkS3Key(key); err != nil {
		return b.errorf("put", key, err)
	}
	if err := checkSize(size); err != nil {
		return b.errorf("put", key, err)
	}
	ctx, opt, explain := b.deadline(ctx)
	tm := transfermanager.New(&s3OptClient{Client: b.client(), opt: opt}, func(o *transfermanager.Options) {
		o.PartSizeBytes = s3PartSize
		o.MultipartUploadThreshold = s3MultipartThreshold
		o.Concurrency = s3PartConcurrency
		o.FailTimeout = b.opts.RequestTimeout
		// As for reads: no flexible checksums unless the operation
		// requires them, for S3-compatible servers that lack them.
		// SigV4 still signs the payload's SHA-256.
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
	})
	sr := newSizedReader(ctx, r, size)
	in := &transfermanager.UploadObjectInput{
		Bucket:        &b.bucket,
		Key:           &key,
		Body:          sr,
		ContentLength: aws.Int64(size),
	}
	if contentType != "" {
		in.ContentType = &contentType
	}
	_, err := tm.UploadObject(ctx, in)
	if ferr := sr.failed(); ferr != nil && err != nil {
		// The transfer manager's message for a failed read is generic.
		err = fmt.Errorf("%w (upload abandoned: %w)", ferr, err)
	}
	if err == nil && !sr.complete() {
		err = fmt.Errorf("%w: the reader was not fully consumed", ErrSizeMismatch)
	}
	if err != nil {
		return b.errorf("put", key, mapS3WriteError(explain(err)))
	}
	return nil
}

// Delete removes the object; S3 answers a missing key with success too.
func (b *s3Backend) Delete(ctx context.Context, key string) error {
	if err := checkS3Key(key); err != nil {
		return b.errorf("delete", key, err)
	}
	ctx, opt, explain := b.deadline(ctx)
	in := &s3.DeleteObjectInput{Bucket: &b.bucket, Key: &key}
	_, err := b.client().DeleteObject(ctx, in, opt)
	if b.learnRegion(err) {
		_, err = b.client().DeleteObject(ctx, in, opt)
	}
	if err != nil {
		err = mapS3WriteError(explain(err))
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		return b.errorf("delete", key, err)
	}
	return nil
}

// mapS3WriteError is mapS3Error for writes, where AccessDenied refuses
// the credentials instead of hiding a missing key.
func mapS3WriteError(err error) error {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch code := ae.ErrorCode(); code {
		case "AccessDenied", "Forbidden", "AllAccessDisabled":
			return fmt.Errorf("%w (%s: %s)", ErrAuth, code, ae.ErrorMessage())
		}
	}
	return mapS3Error(err)
}

// s3OptClient adds one Put's deadline option to every call the transfer
// manager makes.
type s3OptClient struct {
	*s3.Client
	opt func(*s3.Options)
}

func (c *s3OptClient) PutObject(ctx context.Context, in *s3.PutObjectInput, o ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	return c.Client.PutObject(ctx, in, append(o, c.opt)...)
}

func (c *s3OptClient) UploadPart(ctx context.Context, in *s3.UploadPartInput, o ...func(*s3.Options)) (*s3.UploadPartOutput, error) {
	return c.Client.UploadPart(ctx, in, append(o, c.opt)...)
}

func (c *s3OptClient) CreateMultipartUpload(ctx context.Context, in *s3.CreateMultipartUploadInput, o ...func(*s3.Options)) (*s3.CreateMultipartUploadOutput, error) {
	return c.Client.CreateMultipartUpload(ctx, in, append(o, c.opt)...)
}

func (c *s3OptClient) CompleteMultipartUpload(ctx context.Context, in *s3.CompleteMultipartUploadInput, o ...func(*s3.Options)) (*s3.CompleteMultipartUploadOutput, error) {
	return c.Client.CompleteMultipartUpload(ctx, in, append(o, c.opt)...)
}

func (c *s3OptClient) AbortMultipartUpload(ctx context.Context, in *s3.AbortMultipartUploadInput, o ...func(*s3.Options)) (*s3.AbortMultipartUploadOutput, error) {
	return c.Client.AbortMultipartUpload(ctx, in, append(o, c.opt)...)
}

// The backends that can store objects.
var (
	_ Writer = (*fileBackend)(nil)
	_ Writer = (*httpBackend)(nil)
	_ Writer = (*s3Backend)(nil)
)
