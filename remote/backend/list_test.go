package backend

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// listServer is an S3 endpoint on 127.0.0.1 that speaks just enough of
// ListObjectsV2 to misbehave: every page holds one narinfo and says it is
// truncated, with the continuation token next chooses from the token the
// request carried. It counts the list requests.
func listServer(t *testing.T, next func(tok string) string) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("list-type") != "2" {
			http.Error(w, "not a list", http.StatusNotFound)
			return
		}
		n := requests.Add(1)
		w.Header().Set("Content-Type", "application/xml")
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
<Name>cache</Name><Prefix></Prefix><Delimiter>/</Delimiter><MaxKeys>1000</MaxKeys>
<IsTruncated>true</IsTruncated><KeyCount>1</KeyCount>
<Contents><Key>%032d.narinfo</Key><Size>10</Size></Contents>
<NextContinuationToken>%s</NextContinuationToken>
</ListBucketResult>`, n, next(r.URL.Query().Get("continuation-token")))
	}))
	t.Cleanup(srv.Close)
	return srv, &requests
}

// TestS3ListStopsOnRepeatedToken: a listing that is always "truncated" and
// comes back to a token it gave before ends with ErrListing after one
// round of the cycle, instead of listing for ever (18,000 requests in 15 s
// and counting, before).
func TestS3ListStopsOnRepeatedToken(t *testing.T) {
	isolateAWS(t)
	for _, tc := range []struct {
		name  string
		cycle int // pages in the token cycle
		next  func(string) string
	}{
		{"same token", 1, func(string) string { return "same" }},
		{"cycle of three", 3, func(tok string) string {
			return map[string]string{"": "a", "a": "b", "b": "c", "c": "a"}[tok]
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, requests := listServer(t, tc.next)
			b := mustOpen(t, "s3://cache?region=us-east-1&endpoint="+srv.URL, faultOpts())
			var keys int
			err := within(t, "List", func() error {
				return b.List(context.Background(), ".narinfo", func(string) error { keys++; return nil })
			})
			if !errors.Is(err, ErrListing) || !strings.Contains(err.Error(), "s3://cache: list") {
				t.Fatalf("List = %v, want ErrListing naming the cache", err)
			}
			// The first page has no token; then every token of the
			// cycle once, and the page that repeats one.
			if got, want := requests.Load(), int64(tc.cycle+1); got != want {
				t.Errorf("%d list requests, want %d", got, want)
			}
			if keys != tc.cycle+1 {
				t.Errorf("fn saw %d keys, want %d", keys, tc.cycle+1)
			}
		})
	}
}

// TestS3ListTruncatedWithoutToken: "truncated" with no token to follow is
// an error, not the end of the listing nor a restart from the first page.
func TestS3ListTruncatedWithoutToken(t *testing.T) {
	isolateAWS(t)
	srv, requests := listServer(t, func(string) string { return "" })
	b := mustOpen(t, "s3://cache?region=us-east-1&endpoint="+srv.URL, faultOpts())
	err := within(t, "List", func() error {
		return b.List(context.Background(), ".narinfo", func(string) error { return nil })
	})
	if !errors.Is(err, ErrListing) || requests.Load() != 1 {
		t.Fatalf("List = %v after %d requests, want ErrListing after 1", err, requests.Load())
	}
}
