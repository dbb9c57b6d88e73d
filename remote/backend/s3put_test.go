package backend

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

func TestS3Put(t *testing.T) {
	ctx := context.Background()
	isolateAWS(t)
	g := startVersityGW(t, testRegion)
	admin := g.adminClient()
	for _, bucket := range []string{"upload", "pub"} {
		if _, err := admin.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
			t.Fatal(err)
		}
	}
	g.makePublic(t, "pub")
	noUploads := func(t *testing.T) {
		t.Helper()
		out, err := admin.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String("upload")})
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range out.Uploads {
			t.Errorf("multipart upload left: key %s id %s", aws.ToString(u.Key), aws.ToString(u.UploadId))
		}
	}
	absent := func(t *testing.T, key string) {
		t.Helper()
		if _, err := admin.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("upload"), Key: &key}); err == nil {
			t.Errorf("%s exists after a failed put", key)
		}
	}

	setAWSKeys(t, vgwAccess, vgwSecret)
	url := "s3://upload?region=" + testRegion + "&endpoint=" + g.Endpoint
	b := mustOpen(t, url, s3Opts())
	w := writerOf(t, b)

	t.Run("small", func(t *testing.T) {
		info := []byte("StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 40\n")
		if err := w.Put(ctx, "nix-cache-info", onlyReader{bytes.NewReader(info)}, int64(len(info)), "text/x-nix-cache-info"); err != nil {
			t.Fatal(err)
		}
		if got := getAll(t, b, "nix-cache-info"); !bytes.Equal(got, info) {
			t.Errorf("got %q back", got)
		}
		head, err := admin.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("upload"), Key: aws.String("nix-cache-info")})
		if err != nil || aws.ToString(head.ContentType) != "text/x-nix-cache-info" {
			t.Errorf("Content-Type %q (%v)", aws.ToString(head.ContentType), err)
		}
		if err := w.Put(ctx, "empty", strings.NewReader(""), 0, ""); err != nil {
			t.Errorf("empty: %v", err)
		}
		if err := w.Put(ctx, "long", strings.NewReader("0123456789x"), 10, ""); !errors.Is(err, ErrSizeMismatch) {
			t.Errorf("long reader: %v", err)
		}
		absent(t, "long")
		if err := w.Put(ctx, "/abs", strings.NewReader("x"), 1, ""); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("absolute key: %v", err)
		}
	})

	t.Run("multipart", func(t *testing.T) {
		data := randBytes(t, 17<<20+123)
		key := "nar/big.nar.zst"
		if err := w.Put(ctx, key, onlyReader{bytes.NewReader(data)}, int64(len(data)), "application/zstd"); err != nil {
			t.Fatal(err)
		}
		if got := getAll(t, b, key); !bytes.Equal(got, data) {
			t.Errorf("got %d bytes back, want %d", len(got), len(data))
		}
		head, err := admin.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("upload"), Key: &key})
		if err != nil {
			t.Fatal(err)
		}
		// A multipart object's ETag is "<md5 of md5s>-<parts>".
		if etag := aws.ToString(head.ETag); !strings.Contains(etag, "-") {
			t.Errorf("ETag %s: not a multipart upload", etag)
		}
		if aws.ToString(head.ContentType) != "application/zstd" {
			t.Errorf("Content-Type %q", aws.ToString(head.ContentType))
		}
		noUploads(t)
	})

	t.Run("abort", func(t *testing.T) {
		// The check below sees an upload that was left open.
		mpu, err := admin.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String("upload"), Key: aws.String("probe")})
		if err != nil {
			t.Fatal(err)
		}
		if out, err := admin.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String("upload")}); err != nil || len(out.Uploads) != 1 {
			t.Fatalf("ListMultipartUploads does not show an open upload: %v", err)
		}
		if _, err := admin.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String("upload"), Key: aws.String("probe"), UploadId: mpu.UploadId}); err != nil {
			t.Fatal(err)
		}

		boom := errors.New("boom")
		err = w.Put(ctx, "nar/broken.nar", &failAfter{data: randBytes(t, 20<<20), err: boom}, 40<<20, "")
		if !errors.Is(err, boom) {
			t.Errorf("failing reader: %v", err)
		}
		wantNamed(t, err, b, "nar/broken.nar")
		err = w.Put(ctx, "nar/short.nar", bytes.NewReader(randBytes(t, 25<<20)), 40<<20, "")
		if !errors.Is(err, ErrSizeMismatch) || !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("short reader: %v", err)
		}
		err = w.Put(ctx, "nar/long.nar", bytes.NewReader(randBytes(t, 25<<20)), 20<<20, "")
		if !errors.Is(err, ErrSizeMismatch) {
			t.Errorf("long reader: %v", err)
		}
		cctx, cancel := context.WithCancel(ctx)
		r := &failAfter{data: randBytes(t, 20<<20), err: boom}
		err = w.Put(cctx, "nar/cancelled.nar", readFunc(func(p []byte) (int, error) {
			if len(r.data) < 5<<20 {
				cancel()
			}
			return r.Read(p)
		}), 40<<20, "")
		if !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled: %v", err)
		}
		for _, k := range []string{"nar/broken.nar", "nar/short.nar", "nar/long.nar", "nar/cancelled.nar"} {
			absent(t, k)
		}
		noUploads(t)
	})

	t.Run("delete", func(t *testing.T) {
		if err := w.Delete(ctx, "nix-cache-info"); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Stat(ctx, "nix-cache-info"); !errors.Is(err, ErrNotFound) {
			t.Errorf("after delete: %v", err)
		}
		if err := w.Delete(ctx, "nix-cache-info"); err != nil {
			t.Errorf("deleting a missing key: %v", err)
		}
	})

	t.Run("auth", func(t *testing.T) {
		setAWSKeys(t, vgwAccess, "wrong-secret")
		bad := writerOf(t, mustOpen(t, url, s3Opts()))
		if err := bad.Put(ctx, "x", strings.NewReader("x"), 1, ""); !errors.Is(err, ErrAuth) {
			t.Errorf("wrong secret: %v", err)
		}
		if err := bad.Delete(ctx, "x"); !errors.Is(err, ErrAuth) {
			t.Errorf("wrong secret, delete: %v", err)
		}
		setAWSKeys(t, "", "")
		anon := writerOf(t, mustOpen(t, "s3://pub?region="+testRegion+"&endpoint="+g.Endpoint, s3Opts()))
		if err := anon.Put(ctx, "x", strings.NewReader("x"), 1, ""); !errors.Is(err, ErrAuth) {
			t.Errorf("anonymous: %v", err)
		}
	})
}

type readFunc func([]byte) (int, error)

func (f readFunc) Read(p []byte) (int, error) { return f(p) }
