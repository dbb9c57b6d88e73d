package backend

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

func absFixture(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(fixtureDir)
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestFileConformance(t *testing.T) {
	dir := absFixture(t)
	b := mustOpen(t, "file://"+dir+"?priority=30&trusted=true", Options{})
	if b.String() != "file://"+dir {
		t.Errorf("String() = %q", b.String())
	}
	runConformance(t, b, loadFixture(t, dir))
}

// encodedHandler serves the fixture directory, and under /encoded/<enc>
// payloads stored with that Content-Encoding header, like a cache whose
// narinfo/.ls files were uploaded compressed.
func encodedHandler(dir string, encoded map[string][2][]byte) http.Handler {
	files := http.FileServer(http.Dir(dir))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := strings.TrimPrefix(r.URL.Path, "/")
		if e, ok := encoded[key]; ok {
			w.Header().Set("Content-Encoding", strings.TrimPrefix(key, "encoded/"))
			w.Write(e[0])
			return
		}
		files.ServeHTTP(w, r)
	})
}

func TestHTTPConformance(t *testing.T) {
	dir := absFixture(t)
	fx := loadFixture(t, dir)
	enc := encodedObjects(t, fx.files[fx.narinfos[0]])
	for k, e := range enc {
		fx.encoded[k] = e[1]
	}
	fx.canList = false
	srv := httptest.NewServer(encodedHandler(dir, enc))
	t.Cleanup(srv.Close)
	b := mustOpen(t, srv.URL+"?priority=40&want-mass-query=true", Options{NetrcPath: "/nonexistent"})
	runConformance(t, b, fx)

	// A narinfo URL field may be absolute.
	data, _, err := readObject(context.Background(), b, srv.URL+"/nix-cache-info")
	if err != nil || string(data) != string(fx.files["nix-cache-info"]) {
		t.Errorf("absolute key: %q, %v", data, err)
	}
}

// TestHTTPPrefix: keys resolve below a path prefix, keeping query strings.
func TestHTTPPrefix(t *testing.T) {
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = append(seen, r.URL.RequestURI())
		w.Write([]byte("x"))
	}))
	t.Cleanup(srv.Close)
	b := mustOpen(t, srv.URL+"/some/prefix/", Options{NetrcPath: "/nonexistent"})
	for _, k := range []string{"nix-cache-info", "nar/abc.nar?hash=xyz"} {
		if _, err := ReadAll(context.Background(), b, k, 10); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"/some/prefix/nix-cache-info", "/some/prefix/nar/abc.nar?hash=xyz"}
	if strings.Join(seen, " ") != strings.Join(want, " ") {
		t.Errorf("requested %q, want %q", seen, want)
	}
	if b.String() != srv.URL+"/some/prefix" {
		t.Errorf("String() = %q", b.String())
	}
}

// isolateAWS points the AWS SDK's credential chain at nothing but env.
func isolateAWS(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_ENDPOINT_URL", "")
	t.Setenv("AWS_ENDPOINT_URL_S3", "")
}

func setAWSKeys(t *testing.T, access, secret string) {
	t.Setenv("AWS_ACCESS_KEY_ID", access)
	t.Setenv("AWS_SECRET_ACCESS_KEY", secret)
}

const testRegion = "eu-west-3"

// s3Fixture starts versitygw with the fixture as bucket "cache" (plus
// encoded objects) and, when public, a copy as bucket "pub" readable
// anonymously through a bucket policy.
func s3Fixture(t *testing.T) (*versityGW, *fixture) {
	t.Helper()
	isolateAWS(t)
	g := startVersityGW(t, testRegion)
	dir := absFixture(t)
	fx := loadFixture(t, dir)
	enc := encodedObjects(t, fx.files[fx.narinfos[0]])
	for _, bucket := range []string{"cache", "pub"} {
		g.uploadDir(t, bucket, dir)
		c := g.adminClient()
		for k, e := range enc {
			_, err := c.PutObject(context.Background(), &s3.PutObjectInput{
				Bucket: aws.String(bucket), Key: aws.String(k),
				Body:            strings.NewReader(string(e[0])),
				ContentEncoding: aws.String(strings.TrimPrefix(k, "encoded/")),
			})
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	for k, e := range enc {
		fx.encoded[k] = e[1]
	}
	g.makePublic(t, "pub")
	return g, fx
}

// makePublic grants anonymous GetObject and ListBucket with a bucket
// policy. versitygw v1.8.0 creates buckets with ObjectOwnership
// BucketOwnerEnforced, so the canned ACL public-read is refused
// (AccessControlListNotSupported); the policy route works.
func (g *versityGW) makePublic(t *testing.T, bucket string) {
	t.Helper()
	pol := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*",` +
		`"Action":["s3:GetObject","s3:ListBucket"],` +
		`"Resource":["arn:aws:s3:::` + bucket + `","arn:aws:s3:::` + bucket + `/*"]}]}`
	_, err := g.adminClient().PutBucketPolicy(context.Background(), &s3.PutBucketPolicyInput{Bucket: &bucket, Policy: &pol})
	if err != nil {
		t.Fatalf("public policy on %s: %v", bucket, err)
	}
}

func s3Opts() Options {
	return Options{RequestTimeout: 10 * time.Second, StallTimeout: 10 * time.Second, RetryBaseDelay: time.Millisecond}
}

func TestS3Conformance(t *testing.T) {
	g, fx := s3Fixture(t)
	setAWSKeys(t, vgwAccess, vgwSecret)
	b := mustOpen(t, "s3://cache?region="+testRegion+"&endpoint="+g.Endpoint+"&compression=zstd", s3Opts())
	if b.String() != "s3://cache" {
		t.Errorf("String() = %q", b.String())
	}
	runConformance(t, b, fx)

	t.Run("Anonymous", func(t *testing.T) {
		// No credentials anywhere: like Nix ≥2.33, requests go out
		// unsigned, and a public bucket reads fine.
		setAWSKeys(t, "", "")
		pub := mustOpen(t, "s3://pub?region="+testRegion+"&endpoint="+g.Endpoint, s3Opts())
		runConformance(t, pub, fx)

		// A private bucket denies anonymous readers with AccessDenied,
		// which Nix (and we) read as "missing".
		priv := mustOpen(t, "s3://cache?region="+testRegion+"&endpoint="+g.Endpoint, s3Opts())
		_, err := priv.Get(context.Background(), "nix-cache-info")
		checkNotFound(t, priv, "anonymous get", "nix-cache-info", err)
	})
}

func TestS3WrongCredentials(t *testing.T) {
	g, _ := s3Fixture(t)
	const badSecret = "THIS-SECRET-MUST-NOT-LEAK"
	for _, keys := range [][2]string{{"nosuchaccesskey", badSecret}, {vgwAccess, badSecret}} {
		setAWSKeys(t, keys[0], keys[1])
		b := mustOpen(t, "s3://cache?region="+testRegion+"&endpoint="+g.Endpoint, s3Opts())
		ctx := context.Background()
		_, getErr := b.Get(ctx, "nix-cache-info")
		_, statErr := b.Stat(ctx, "nix-cache-info")
		_, rangeErr := readRange(ctx, b, "nix-cache-info", 0, 1)
		listErr := b.List(ctx, ".narinfo", func(string) error { return nil })
		for op, err := range map[string]error{"get": getErr, "stat": statErr, "range": rangeErr, "list": listErr} {
			checkAuthErr(t, op, keys[0], err, badSecret)
		}
	}
}

func checkAuthErr(t *testing.T, op, access string, err error, secret string) {
	t.Helper()
	if !errors.Is(err, ErrAuth) || errors.Is(err, ErrNotFound) {
		t.Errorf("%s with access key %s: %v; want ErrAuth and not ErrNotFound", op, access, err)
	}
	if err != nil && strings.Contains(err.Error(), secret) {
		t.Errorf("%s: error leaks the secret: %v", op, err)
	}
}

func TestS3Profile(t *testing.T) {
	g, fx := s3Fixture(t)
	dir := t.TempDir()
	creds := "[default]\naws_access_key_id = wrongkey\naws_secret_access_key = wrongsecret\n\n" +
		"[narfs-test]\naws_access_key_id = " + vgwAccess + "\naws_secret_access_key = " + vgwSecret + "\n"
	conf := "[default]\nregion = us-east-1\n\n[profile narfs-test]\nregion = " + testRegion + "\n"
	for name, data := range map[string]string{"credentials": creds, "config": conf} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	ctx := context.Background()

	// The profile supplies the keys, and an explicit profile wins over
	// credentials in the environment (Nix: a profile name means only that
	// profile). Its region is not used (Nix signs for us-east-1): the
	// bucket says where it is.
	setAWSKeys(t, "envkey", "envsecret")
	b := mustOpen(t, "s3://cache?profile=narfs-test&endpoint="+g.Endpoint, s3Opts())
	data, err := ReadAll(ctx, b, "nix-cache-info", 1<<10)
	if err != nil || string(data) != string(fx.files["nix-cache-info"]) {
		t.Fatalf("profile narfs-test: %q, %v", data, err)
	}
	if _, err := Open(ctx, mustParse(t, "s3://cache?profile=no-such-profile&endpoint="+g.Endpoint), s3Opts()); err == nil ||
		!strings.Contains(err.Error(), "no-such-profile") {
		t.Errorf("unknown profile: %v, want an error naming it", err)
	}
	// The default profile has wrong keys: an auth error, not "missing".
	setAWSKeys(t, "", "")
	def := mustOpen(t, "s3://cache?region="+testRegion+"&endpoint="+g.Endpoint, s3Opts())
	_, err = def.Get(ctx, "nix-cache-info")
	checkAuthErr(t, "get with default profile", "wrongkey", err, "wrongsecret")
}

func TestS3RegionAndScheme(t *testing.T) {
	g, fx := s3Fixture(t)
	setAWSKeys(t, vgwAccess, vgwSecret)
	ctx := context.Background()
	host := strings.TrimPrefix(g.Endpoint, "http://")
	for _, raw := range []string{
		"s3://cache?region=" + testRegion + "&endpoint=" + g.Endpoint,
		"s3://cache?aws-region=" + testRegion + "&endpoint=" + g.Endpoint,
		"s3://cache?region=" + testRegion + "&scheme=http&endpoint=" + host,
		"s3://cache?region=" + testRegion + "&scheme=http&endpoint=" + host + "&addressing-style=path",
	} {
		b := mustOpen(t, raw, s3Opts())
		data, err := ReadAll(ctx, b, "nix-cache-info", 1<<10)
		if err != nil || string(data) != string(fx.files["nix-cache-info"]) {
			t.Errorf("%s: %q, %v", raw, data, err)
		}
	}
	// Without region=, the gateway's x-amz-bucket-region tells where the
	// bucket is; the region of the environment never counts.
	t.Setenv("AWS_REGION", "ap-south-1")
	t.Setenv("AWS_DEFAULT_REGION", "ap-south-1")
	b := mustOpen(t, "s3://cache?endpoint="+g.Endpoint, s3Opts())
	if data, err := ReadAll(ctx, b, "nix-cache-info", 1<<10); err != nil || string(data) != string(fx.files["nix-cache-info"]) {
		t.Errorf("no region=: %q, %v", data, err)
	}
	// region= always wins: a wrong one is signed for the wrong scope and
	// must fail, not read as missing.
	b = mustOpen(t, "s3://cache?region=us-west-2&endpoint="+g.Endpoint, s3Opts())
	_, err := b.Get(ctx, "nix-cache-info")
	checkAuthErr(t, "get in wrong region", vgwAccess, err, vgwSecret)
}

// TestS3SignsUSEast1ByDefault: a service that does not say where the
// bucket is gets requests signed for us-east-1, as from Nix, whatever
// region the environment or profile names.
func TestS3SignsUSEast1ByDefault(t *testing.T) {
	isolateAWS(t)
	setAWSKeys(t, "AKIAFAKE", "fakesecret")
	t.Setenv("AWS_REGION", "eu-central-1")
	var mu sync.Mutex
	var scopes []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		scopes = append(scopes, r.Header.Get("Authorization"))
		mu.Unlock()
		w.Write([]byte("StoreDir: /nix/store\n"))
	}))
	defer srv.Close()
	b := mustOpen(t, "s3://bucket?endpoint="+srv.URL, s3Opts())
	if _, err := ReadAll(context.Background(), b, "nix-cache-info", 100); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, a := range scopes {
		if !strings.Contains(a, "/us-east-1/s3/aws4_request") {
			t.Errorf("request signed with %q, want the us-east-1 scope", a)
		}
	}
	if len(scopes) == 0 {
		t.Fatal("no request reached the server")
	}
}
