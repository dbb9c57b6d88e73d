package integration

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// endlessS3 is a fault-injecting S3 endpoint on 127.0.0.1: every
// ListObjectsV2 page holds one narinfo key (of no narinfo: a GET of it is
// 404) and says it is truncated, with the token next gives; everything
// else is 404.
func endlessS3(t *testing.T, next func(page int64) string) (string, *atomic.Int64) {
	t.Helper()
	var pages atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("list-type") != "2" {
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchKey</Code><Message>no</Message></Error>`)
			return
		}
		n := pages.Add(1)
		w.Header().Set("Content-Type", "application/xml")
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
<Name>cache</Name><Prefix></Prefix><Delimiter>/</Delimiter><MaxKeys>1000</MaxKeys>
<IsTruncated>true</IsTruncated><KeyCount>1</KeyCount>
<Contents><Key>%032d.narinfo</Key><Size>10</Size></Contents>
<NextContinuationToken>%s</NextContinuationToken>
</ListBucketResult>`, n, next(n))
	}))
	t.Cleanup(srv.Close)
	return "s3://cache?region=us-east-1&endpoint=" + srv.URL, &pages
}

// TestMountRootListingEnds: `ls` of the mount root over an S3 listing that
// never ends answers within --timeout through the kernel: EIO when the
// listing repeats a continuation token, the paths found by then when it
// goes on with fresh tokens. Before, READDIR listed for ever and the
// reader never got an answer.
func TestMountRootListingEnds(t *testing.T) {
	requireE2E(t)
	const timeout = 2 * time.Second
	env := []string{"AWS_ACCESS_KEY_ID=narfs", "AWS_SECRET_ACCESS_KEY=narfs-test", "AWS_EC2_METADATA_DISABLED=true"}
	for _, tc := range []struct {
		name    string
		next    func(int64) string
		wantErr error
	}{
		{"same token", func(int64) string { return "same" }, syscall.EIO},
		{"fresh tokens", func(n int64) string { return "t" + strconv.FormatInt(n, 10) }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url, pages := endlessS3(t, tc.next)
			m := mountNarfs(t, url, env, "--timeout", timeout.String(), "--lookahead-references=false")
			type result struct {
				ents []os.DirEntry
				err  error
			}
			done := make(chan result, 1)
			start := time.Now()
			go func() {
				ents, err := os.ReadDir(m.Dir)
				done <- result{ents, err}
			}()
			var res result
			select {
			case res = <-done:
			case <-time.After(10 * timeout):
				t.Fatalf("ls of the mount root gave no answer in %v (--timeout=%v; %d list requests)",
					10*timeout, timeout, pages.Load())
			}
			t.Logf("ReadDir after %v, %d list requests: %d entries, %v", time.Since(start), pages.Load(), len(res.ents), res.err)
			if tc.wantErr != nil {
				if !errors.Is(res.err, tc.wantErr) {
					t.Fatalf("ReadDir = %v, want %v", res.err, tc.wantErr)
				}
				if pages.Load() > 2 {
					t.Errorf("%d list requests for a token repeated at once", pages.Load())
				}
				if !m.waitLog("listing does not end") {
					t.Errorf("the log does not say why")
				}
				return
			}
			if res.err != nil {
				t.Fatalf("ReadDir = %v, want the paths found (none)", res.err)
			}
			if !m.waitLog("longer than --timeout") {
				t.Errorf("the log does not say the listing was cut short")
			}
		})
	}
}

// TestWriteToolsListingEnds: `narfs verify --all` and `narfs index --all`
// over an S3 listing that repeats its continuation token fail (exit 1,
// saying why) instead of listing for ever.
func TestWriteToolsListingEnds(t *testing.T) {
	requireE2E(t)
	url, pages := endlessS3(t, func(int64) string { return "same" })
	env := []string{"AWS_ACCESS_KEY_ID=narfs", "AWS_SECRET_ACCESS_KEY=narfs-test", "AWS_EC2_METADATA_DISABLED=true"}
	sk, err := filepath.Abs("../nar/testdata/keys/narfs-test-1.sk")
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"verify", url, "--all"},
		{"index", "--secret-key", sk, url, "--all"},
	} {
		before := pages.Load()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		cmd := exec.CommandContext(ctx, narfsBin, args...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		timedOut := ctx.Err() != nil
		cancel()
		if timedOut {
			t.Fatalf("narfs %s still listing after 60s (%d list requests)", args[0], pages.Load()-before)
		}
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "listing does not end") {
			t.Errorf("narfs %s: %v, want exit 1 saying the listing does not end:\n%s", args[0], err, out)
		}
		if n := pages.Load() - before; n > 2 {
			t.Errorf("narfs %s: %d list requests", args[0], n)
		}
	}
}
