package backend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/logging"
)

// s3Backend serves s3://BUCKET through aws-sdk-go-v2. Keys are object keys
// in the bucket; absolute URLs are rejected.
type s3Backend struct {
	// All fields but cl are read-only after openS3.
	name   string
	bucket string
	opts   Options
	log    *slog.Logger
	// cl is the client for the region requests are signed for; without
	// region= in the URL it starts as us-east-1 (as in Nix) and changes
	// once if the service names the bucket's real region.
	cl        atomic.Pointer[s3.Client]
	newClient func(region string) *s3.Client // nil when region= was given
	regionMu  sync.Mutex                     // serialises region changes
	region    string                         // protected by regionMu
}

var (
	expectingRegion = regexp.MustCompile(`expecting ['"]([a-z0-9-]+)['"]`)
	validRegion     = regexp.MustCompile(`^[a-z0-9-]{1,40}$`)
)

// client is the client of the bucket's region as known now.
func (b *s3Backend) client() *s3.Client { return b.cl.Load() }

// learnRegion reports whether err came with the bucket's real region
// (x-amz-bucket-region, which S3 and compatible services send with a
// wrong-region error) and switched to it: the request is then worth
// one more try.
func (b *s3Backend) learnRegion(err error) bool {
	if b.newClient == nil || err == nil {
		return false
	}
	r := ""
	var re *awshttp.ResponseError
	if errors.As(err, &re) && re.Response != nil {
		r = re.Response.Header.Get("X-Amz-Bucket-Region")
	}
	// AWS and versitygw also say it in the message of the wrong-region
	// error: `the region 'us-east-1' is wrong; expecting 'eu-west-1'`.
	var ae smithy.APIError
	if r == "" && errors.As(err, &ae) && ae.ErrorCode() == "AuthorizationHeaderMalformed" {
		if m := expectingRegion.FindStringSubmatch(ae.ErrorMessage()); m != nil {
			r = m[1]
		}
	}
	if !validRegion.MatchString(r) {
		return false
	}
	b.regionMu.Lock()
	defer b.regionMu.Unlock()
	if r == b.region {
		return true // another request switched already
	}
	b.log.Info("the bucket is in another region; signing for it", "cache", b.name, "region", r, "was", b.region)
	b.region = r
	b.cl.Store(b.newClient(r))
	return true
}

func (b *s3Backend) retryOpts() Options { return b.opts }

func openS3(ctx context.Context, u *StoreURL, opts Options) (*s3Backend, error) {
	name := u.base()
	p := u.Params
	region := p.Get("region")
	if region == "" {
		region = p.Get("aws-region")
	}
	certs, err := clientCertificates(u)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	// The SDK's buildable client lets LoadDefaultConfig apply
	// AWS_CA_BUNDLE; its transport is then wrapped with our guards.
	bc := awshttp.NewBuildableClient().WithTransportOptions(func(t *http.Transport) {
		t.MaxIdleConns = 256
		t.MaxIdleConnsPerHost = 64
		t.DisableCompression = true
		applyClientCerts(t, certs)
	})
	lopts := []func(*config.LoadOptions) error{
		config.WithHTTPClient(bc),
		config.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = opts.MaxAttempts
				// The default token bucket refuses retries once many
				// parallel reads have failed together — exactly when
				// retries are needed.
				o.RateLimiter = ratelimit.None
				o.Backoff = retry.BackoffDelayerFunc(func(attempt int, _ error) (time.Duration, error) {
					return backoff(opts.RetryBaseDelay, opts.RetryMaxDelay, attempt), nil
				})
				o.Retryables = append(o.Retryables, retry.RetryableErrorCode{
					Codes: map[string]struct{}{"InternalError": {}, "ServiceUnavailable": {}},
				})
			})
		}),
		config.WithLogger(sdkLogger{opts.Logger}),
		config.WithRequestChecksumCalculation(aws.RequestChecksumCalculationWhenRequired),
		config.WithResponseChecksumValidation(aws.ResponseChecksumValidationWhenRequired),
	}
	// As in Nix: without region=, requests are signed for us-east-1, never
	// for the region of the AWS profile or environment (a URL that works
	// in Nix must work here); the bucket may then tell its real region.
	probeRegion := region == ""
	if probeRegion {
		region = "us-east-1"
	}
	lopts = append(lopts, config.WithRegion(region))
	if prof := p.Get("profile"); prof != "" {
		lopts = append(lopts, config.WithSharedConfigProfile(prof))
	}
	cfg, err := config.LoadDefaultConfig(ctx, lopts...)
	if err != nil {
		return nil, fmt.Errorf("%s: aws config: %w", name, err)
	}
	hc := opts.HTTPClient
	if hc == nil {
		if b, ok := cfg.HTTPClient.(*awshttp.BuildableClient); ok {
			hc = &http.Client{Transport: b.GetTransport()}
		} else {
			t := newHTTPTransport()
			applyClientCerts(t, certs)
			hc = &http.Client{Transport: t}
		}
	}
	cfg.HTTPClient = guardedClient(hc, opts)

	// Nix ≥2.33 sends unsigned requests when the chain finds no
	// credentials, so public buckets work without any setup. The lookup is
	// bounded: on a host without IMDS it would otherwise wait on
	// connection timeouts.
	anonymous := false
	if cfg.Credentials == nil {
		anonymous = true
	} else {
		cctx, cancel := context.WithTimeout(ctx, opts.RequestTimeout)
		_, err := cfg.Credentials.Retrieve(cctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("%s: %w", name, ctx.Err())
			}
			anonymous = true
			// The error names providers and files, never secrets.
			opts.Logger.Debug("no AWS credentials found; using anonymous requests", "cache", name, "err", err)
		}
	}

	var endpoint string
	if ep := p.Get("endpoint"); ep != "" {
		scheme := p.Get("scheme")
		if scheme == "" {
			scheme = "https"
		}
		if endpoint, err = endpointURL(ep, scheme); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	newClient := func(region string) *s3.Client {
		return s3.NewFromConfig(cfg, func(o *s3.Options) {
			o.Region = region
			s3ClientOptions(o, p, anonymous, endpoint)
		})
	}
	b := &s3Backend{name: name, bucket: u.Host, opts: opts, log: opts.Logger, region: region}
	b.cl.Store(newClient(region))
	if probeRegion {
		b.newClient = newClient
	}
	opts.Logger.Debug("opened s3 store", "cache", name, "region", region, "endpoint", endpoint, "anonymous", anonymous)
	return b, nil
}

// s3ClientOptions applies the store URL's addressing to a client.
func s3ClientOptions(o *s3.Options, p url.Values, anonymous bool, endpoint string) {
	if anonymous {
		o.Credentials = aws.AnonymousCredentials{}
	}
	if endpoint != "" {
		o.BaseEndpoint = aws.String(endpoint)
		// Custom endpoints are addressed path-style, as in Nix.
		o.UsePathStyle = true
	} else if p.Get("scheme") == "http" {
		o.EndpointOptions.DisableHTTPS = true
	}
	switch p.Get("addressing-style") {
	case "path":
		o.UsePathStyle = true
	case "virtual":
		o.UsePathStyle = false
	}
}

// deadline prepares one SDK call to respect ctx's deadline. The SDK sleeps
// its backoff with the context, so a sleep that outlasts the deadline ends
// at the deadline with a bare "canceled" error that hides why the attempts
// failed; its retryer, asked for the delay, has no context. So each call
// gets a retryer that knows it (the option), and explain puts the last
// attempt's cause into an error the deadline ended.
func (b *s3Backend) deadline(ctx context.Context) (context.Context, func(*s3.Options), func(error) error) {
	ctx, la := withLastAttempt(ctx)
	opt := func(o *s3.Options) {
		if _, ok := ctx.Deadline(); ok {
			o.Retryer = &deadlineRetryer{Retryer: o.Retryer, ctx: ctx}
		}
	}
	return ctx, opt, la.explain
}

// deadlineRetryer refuses a retry whose wait would not end before ctx's
// deadline, failing with the last attempt's error (wrapped with
// context.DeadlineExceeded) instead.
type deadlineRetryer struct {
	aws.Retryer
	ctx context.Context
}

func (r *deadlineRetryer) GetAttemptToken(ctx context.Context) (func(error) error, error) {
	if v2, ok := r.Retryer.(aws.RetryerV2); ok {
		return v2.GetAttemptToken(ctx)
	}
	return r.GetInitialToken(), nil
}

func (r *deadlineRetryer) RetryDelay(attempt int, opErr error) (time.Duration, error) {
	d, err := r.Retryer.RetryDelay(attempt, opErr)
	if err != nil {
		return d, err
	}
	if dl, ok := r.ctx.Deadline(); ok {
		wait := sdkRetryAfter(d, opErr)
		if left := time.Until(dl); left <= wait {
			return 0, atDeadline(fmt.Errorf("not retrying: a wait of %v does not fit in the %v left: %w",
				wait.Round(time.Millisecond), max(left, 0).Round(time.Millisecond), opErr))
		}
	}
	return d, nil
}

// sdkRetryAfter is the wait the SDK's retry middleware actually makes for
// backoff d: it honours x-amz-retry-after (milliseconds), clamped to
// [d, d+5s]. Mirrors retry.adjustForRetryAfterHeader (unexported).
func sdkRetryAfter(d time.Duration, err error) time.Duration {
	var re *awshttp.ResponseError
	if !errors.As(err, &re) || re.Response == nil || re.Response.Response == nil {
		return d
	}
	ms, perr := strconv.ParseInt(re.Response.Header.Get("X-Amz-Retry-After"), 10, 64)
	if perr != nil || ms < 0 {
		return d
	}
	if ms > int64((d+5*time.Second)/time.Millisecond) {
		return d + 5*time.Second
	}
	return max(d, time.Duration(ms)*time.Millisecond)
}

// sdkLogger sends the SDK's own messages (e.g. the IMDSv1 fallback
// warning) to our logger at debug level instead of stderr.
type sdkLogger struct{ l *slog.Logger }

func (s sdkLogger) Logf(c logging.Classification, format string, v ...any) {
	s.l.Debug("aws sdk: "+fmt.Sprintf(format, v...), "class", string(c))
}

func (b *s3Backend) String() string { return b.name }

func (b *s3Backend) Close() error { return nil }

func (b *s3Backend) errorf(op, key string, err error) error {
	return fmt.Errorf("%s: %s %s: %w", b, op, key, err)
}

func checkS3Key(key string) error {
	if key == "" || strings.HasPrefix(key, "/") || strings.Contains(key, "://") {
		return fmt.Errorf("%w %q: want a key relative to the bucket", ErrInvalidKey, key)
	}
	return nil
}

// s3AuthCodes are errors caused by the credentials themselves.
var s3AuthCodes = map[string]bool{
	"InvalidAccessKeyId": true, "SignatureDoesNotMatch": true, "ExpiredToken": true,
	"InvalidToken": true, "TokenRefreshRequired": true, "InvalidSecurity": true,
	"AuthorizationHeaderMalformed": true, "AccessKeyDisabled": true, "MissingSecurityHeader": true,
	// versitygw answers an unknown access key with 404 XAdminUserNotFound.
	"XAdminUserNotFound": true,
}

// mapS3Error classifies an SDK error. AccessDenied means "missing" as in
// Nix (S3 answers 403 for missing keys when the caller may not list), but
// credential errors are ErrAuth. The SDK's error text carries request IDs
// and the code, never the secret key.
func mapS3Error(err error) error {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		code := ae.ErrorCode()
		switch {
		case code == "NoSuchKey" || code == "NotFound" || code == "AccessDenied" || code == "Forbidden":
			return fmt.Errorf("%w (%s)", ErrNotFound, code)
		case s3AuthCodes[code]:
			return fmt.Errorf("%w (%s: %s)", ErrAuth, code, ae.ErrorMessage())
		case code == "InvalidRange":
			return fmt.Errorf("%w (%s)", ErrRange, code)
		case code == "NoSuchBucket":
			return fmt.Errorf("bucket does not exist (NoSuchBucket): %w", err)
		}
	}
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &re) && re.HTTPStatusCode() == http.StatusUnauthorized {
		return fmt.Errorf("%w: %w", ErrAuth, err)
	}
	return err
}
