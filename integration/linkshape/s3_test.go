package linkshape

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"go/build"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
)

// Credentials of the versitygw root account in the test. Not secret: the
// gateway only listens on 127.0.0.1 for the duration of one test.
const (
	vgwAccess = "narfstestaccess"
	vgwSecret = "narfstestsecret0123456789"
	vgwRegion = "us-east-1"
)

// startVersityGW runs versitygw's posix backend on a free 127.0.0.1 port
// (as remote/backend's tests do) and returns its endpoint; it skips the
// test if versitygw is not installed.
func startVersityGW(t *testing.T) string {
	t.Helper()
	bin := ""
	for _, gp := range filepath.SplitList(build.Default.GOPATH) {
		if p := filepath.Join(gp, "bin", "versitygw"); fileExists(p) {
			bin = p
			break
		}
	}
	if bin == "" {
		if p, err := exec.LookPath("versitygw"); err == nil {
			bin = p
		}
	}
	if bin == "" {
		t.Skip("versitygw not installed (run .ci/deps); skipping the S3 leg")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	var logBuf bytes.Buffer
	cmd := exec.Command(bin, "--port", addr, "--region", vgwRegion, "--quiet", "posix", t.TempDir())
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+vgwAccess, "ROOT_SECRET_KEY="+vgwSecret)
	cmd.Stdout = &logBuf
	cmd.Stderr = &logBuf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	endpoint := "http://" + addr
	probe := &http.Client{Timeout: 2 * time.Second}
	for deadline := time.Now().Add(20 * time.Second); ; {
		resp, err := probe.Get(endpoint + "/")
		if err == nil {
			resp.Body.Close()
			return endpoint // any S3 answer (403 unsigned) means ready
		}
		select {
		case err := <-exited:
			t.Fatalf("versitygw exited: %v\n%s", err, logBuf.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("versitygw did not answer on %s: %v\n%s", addr, err, logBuf.String())
		}
	}
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// TestS3ThroughProxy points the aws-sdk-go-v2 S3 client at the proxy's
// URL (path-style, as narfs does for custom endpoints): the client signs
// the proxy's Host, the proxy forwards that Host, and versitygw accepts
// the signatures of every kind of request narfs makes.
func TestS3ThroughProxy(t *testing.T) {
	gw := startVersityGW(t)
	p := Profile{Name: "t", TTFB: 5 * time.Millisecond, Rate: 50e6}
	px := start(t, gw, p)
	c := s3.New(s3.Options{
		Region:       vgwRegion,
		BaseEndpoint: aws.String(px.URL()),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(vgwAccess, vgwSecret, ""),
	})
	ctx := context.Background()
	bucket, key := "cache", "nar/some object+name.nar.xz"
	data := blob[:3_000_000]
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &bucket}); err != nil {
		t.Fatalf("CreateBucket through the proxy: %v", err)
	}
	t0 := time.Now()
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: bytes.NewReader(data)}); err != nil {
		t.Fatalf("PutObject through the proxy: %v", err)
	}
	if d, low := time.Since(t0), ideal(len(data), p.Rate)*8/10; d < low {
		t.Errorf("PutObject of 3 MB at 50 MB/s took %v, want ≥ %v", d, low)
	}
	if n := px.BytesReceived(); n < int64(len(data)) {
		t.Errorf("BytesReceived = %d after a PUT of %d", n, len(data))
	}

	t0 = time.Now()
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		t.Fatalf("GetObject: %v", err)
	}
	got, err := io.ReadAll(out.Body)
	out.Body.Close()
	d := time.Since(t0)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("GetObject body: %d bytes, %v; want the %d put", len(got), err, len(data))
	}
	if low := p.TTFB + ideal(len(data), p.Rate)*8/10; d < low {
		t.Errorf("GetObject of 3 MB at 50 MB/s took %v, want ≥ %v", d, low)
	}
	t.Logf("3 MB through %v: GET in %v (ideal %v)", p, d, p.TTFB+ideal(len(data), p.Rate))

	rng := "bytes=1000-1999"
	out, err = c.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &key, Range: &rng})
	if err != nil {
		t.Fatalf("ranged GetObject: %v", err)
	}
	got, err = io.ReadAll(out.Body)
	out.Body.Close()
	if err != nil || !bytes.Equal(got, data[1000:2000]) {
		t.Errorf("ranged GetObject: %d bytes, %v; want data[1000:2000]", len(got), err)
	}
	if cr, want := aws.ToString(out.ContentRange), fmt.Sprintf("bytes 1000-1999/%d", len(data)); cr != want {
		t.Errorf("ContentRange %q, want %q", cr, want)
	}

	head, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		t.Fatalf("HeadObject: %v", err)
	}
	if n := aws.ToInt64(head.ContentLength); n != int64(len(data)) {
		t.Errorf("HeadObject ContentLength %d, want %d", n, len(data))
	}
	prefix := "nar/"
	list, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &bucket, Prefix: &prefix})
	if err != nil {
		t.Fatalf("ListObjectsV2 (query string signed): %v", err)
	}
	if len(list.Contents) != 1 || aws.ToString(list.Contents[0].Key) != key {
		t.Errorf("ListObjectsV2: %d keys, want [%q]", len(list.Contents), key)
	}
	missing := "nar/missing"
	_, err = c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &bucket, Key: &missing})
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode() != "NotFound" {
		t.Errorf("HeadObject of a missing key: %v; want NotFound handed on", err)
	}

	// The signature covers the Host: forwarding the upstream's Host instead
	// (WithUpstreamHost) must break it, which shows the default matters.
	px2, err := Start(gw, Loopback, WithUpstreamHost())
	if err != nil {
		t.Fatal(err)
	}
	defer px2.Close()
	c2 := s3.New(s3.Options{
		Region:       vgwRegion,
		BaseEndpoint: aws.String(px2.URL()),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(vgwAccess, vgwSecret, ""),
	})
	if _, err := c2.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &bucket, Key: &key}); err == nil {
		t.Error("HeadObject signed for the proxy's Host but sent with the upstream's was accepted; the Host test proves nothing")
	} else {
		t.Logf("with WithUpstreamHost, as expected: %v", err)
	}
}
