package backend

import (
	"bytes"
	"context"
	"go/build"
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
)

// Credentials of the versitygw root account in tests. Not secret: the
// gateway only listens on 127.0.0.1 for the duration of one test.
const (
	vgwAccess = "narfstestaccess"
	vgwSecret = "narfstestsecret0123456789"
)

// versityGW is a running versitygw gateway.
type versityGW struct {
	Endpoint string // http://127.0.0.1:PORT
	Region   string
	Root     string // posix root; each subdirectory is a bucket
}

// versityGWPath finds the pinned versitygw binary (installed by .ci/deps
// into GOPATH/bin), or "" if it is not installed.
func versityGWPath() string {
	for _, gp := range filepath.SplitList(build.Default.GOPATH) {
		p := filepath.Join(gp, "bin", "versitygw")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p
	}
	return ""
}

// startVersityGW runs versitygw's posix backend on a fresh root directory
// on a free 127.0.0.1 port, waits until it answers, and stops exactly that
// process at cleanup. The test is skipped if versitygw is not installed.
func startVersityGW(t *testing.T, region string) *versityGW {
	t.Helper()
	bin := versityGWPath()
	if bin == "" {
		t.Skip("versitygw not installed (run .ci/deps); skipping the S3 leg")
	}
	root := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	var logBuf bytes.Buffer
	cmd := exec.Command(bin, "--port", addr, "--region", region, "--quiet", "posix", root)
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
	deadline := time.Now().Add(20 * time.Second)
	probe := &http.Client{Timeout: 2 * time.Second}
	for {
		resp, err := probe.Get(endpoint + "/")
		if err == nil {
			resp.Body.Close()
			break // any S3 answer (403 for an unsigned request) means ready
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
	return &versityGW{Endpoint: endpoint, Region: region, Root: root}
}

// adminClient is an S3 client with the root credentials, for test setup.
func (g *versityGW) adminClient() *s3.Client {
	return s3.New(s3.Options{
		Region:       g.Region,
		BaseEndpoint: aws.String(g.Endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(vgwAccess, vgwSecret, ""),
	})
}

// uploadDir creates bucket and puts every regular file under dir into it,
// keyed by its slash-separated relative path.
func (g *versityGW) uploadDir(t *testing.T, bucket, dir string) {
	t.Helper()
	ctx := context.Background()
	c := g.adminClient()
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &bucket}); err != nil {
		t.Fatalf("create bucket %s: %v", bucket, err)
	}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		_, err = c.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: bytes.NewReader(data)})
		return err
	})
	if err != nil {
		t.Fatalf("upload %s: %v", dir, err)
	}
}
