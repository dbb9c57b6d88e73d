package backend

import (
	"strings"
	"testing"
)

func TestParseStoreURLAcceptsNixParams(t *testing.T) {
	all := "priority=40&want-mass-query=true&trusted=1&compression=zstd&secret-key=/k/sk&secret-keys=/a,/b" +
		"&write-nar-listing=true&ls-compression=br&narinfo-compression=xz&log-compression=br" +
		"&parallel-compression=true&compression-level=9&index-debug-info=false&local-nar-cache=/tmp/c" +
		"&path-info-cache-size=65536&system-features=kvm&store=/nix/store"
	http := "&tls-certificate=/c.pem&tls-private-key=/k.pem&retry-attempts=3&retry-delay=100" +
		"&retry-delay-rate-limited=1000&retry-max-delay=5000"
	s3 := "&region=eu-west-1&endpoint=minio.local:9000&profile=p&scheme=http&addressing-style=path" +
		"&multipart-upload=true&buffer-size=5242880&multipart-chunk-size=5242880" +
		"&multipart-threshold=104857600&storage-class=STANDARD_IA"
	for _, raw := range []string{
		"file:///srv/cache?" + all,
		"http://cache.example/prefix?" + all + http,
		"https://cache.example?" + all + http,
		"s3://bucket?" + all + http + s3,
		"s3://bucket?aws-region=us-west-2&endpoint=https://s3.example:8443",
		"s3://bucket",
		"s3://bucket/",
		"file://localhost/srv/cache",
	} {
		if _, err := ParseStoreURL(raw); err != nil {
			t.Errorf("ParseStoreURL(%q): %v", raw, err)
		}
	}
}

func TestParseStoreURLFields(t *testing.T) {
	for _, tc := range []struct{ raw, scheme, host, path string }{
		{"file:///srv/cache/", "file", "", "/srv/cache"},
		{"http://h:8080/a/b/", "http", "h:8080", "/a/b"},
		{"HTTPS://h", "https", "h", ""},
		{"s3://my-bucket?region=eu-west-1", "s3", "my-bucket", ""},
	} {
		u, err := ParseStoreURL(tc.raw)
		if err != nil {
			t.Fatalf("%s: %v", tc.raw, err)
		}
		if u.Scheme != tc.scheme || u.Host != tc.host || u.Path != tc.path || u.Raw != tc.raw {
			t.Errorf("%s: got %q %q %q", tc.raw, u.Scheme, u.Host, u.Path)
		}
	}
}

func TestParseStoreURLErrors(t *testing.T) {
	for _, tc := range []struct{ raw, want string }{
		{"s3://bucket?regoin=eu-west-1", `unknown store parameter "regoin"`},
		{"https://cache.example?region=eu-west-1", `"region" is only valid for s3`},
		{"file:///c?endpoint=x", `"endpoint" is only valid for s3`},
		{"http://h?profile=p", `"profile" is only valid for s3`},
		{"http://h?scheme=http", `"scheme" is only valid for s3`},
		{"http://h?addressing-style=path", `"addressing-style" is only valid for s3`},
		{"file:///c?retry-attempts=3", `only valid for http(s):// and s3://`},
		{"s3://b?scheme=ftp", "want http or https"},
		{"s3://b?addressing-style=sideways", "want auto, path or virtual"},
		{"s3://b?priority=high", "not an integer"},
		{"s3://b?want-mass-query=yes", "not a boolean"},
		{"s3://b?region=", "empty"},
		{"s3://b?region=a&region=b", "given 2 times"},
		{"s3://b?region=a&aws-region=b", "disagree"},
		{"s3://b?endpoint=ftp://x", "bad endpoint"},
		{"s3://b/prefix", "no key prefix"},
		{"s3://", "missing bucket"},
		{"s3://key:secret@b", "credentials do not belong"},
		{"http://", "missing host"},
		{"file://relative/dir", "absolute path"},
		{"file:relative", "absolute path"},
		{"ftp://h", "unsupported scheme"},
		{"/just/a/path", "missing scheme"},
		{"http://h/%zz", "invalid URL escape"},
	} {
		_, err := ParseStoreURL(tc.raw)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseStoreURL(%q) = %v, want error containing %q", tc.raw, err, tc.want)
		}
	}
}

func TestStoreURLRedaction(t *testing.T) {
	for _, tc := range []struct{ raw, want, secret string }{
		{"https://alice:hunter2@cache.example/p?priority=10", "https://cache.example/p?priority=10", "hunter2"},
		{"file:///c?secret-key=/keys/sk", "file:///c?secret-key=REDACTED", "/keys/sk"},
		{"s3://b?secret-keys=k1,k2&region=r", "s3://b?region=r&secret-keys=REDACTED", "k1"},
	} {
		u, err := ParseStoreURL(tc.raw)
		if err != nil {
			t.Fatal(err)
		}
		if got := u.String(); got != tc.want || strings.Contains(got, tc.secret) {
			t.Errorf("String(%q) = %q, want %q", tc.raw, got, tc.want)
		}
	}
	// Parse errors must not echo credentials either.
	for _, raw := range []string{"https://alice:hunter2@h/%zz", "https://alice:hunter2@h?regoin=x", "ftp://alice:hunter2@h"} {
		if _, err := ParseStoreURL(raw); err == nil || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("ParseStoreURL(%q) error %v leaks the password", raw, err)
		}
	}
}

func FuzzParseStoreURL(f *testing.F) {
	for _, s := range []string{
		"s3://bucket?region=eu-west-1&endpoint=http://127.0.0.1:9000&profile=p",
		"https://alice:pw@cache.nixos.org/prefix?priority=40&want-mass-query=true",
		"file:///srv/cache?compression=zstd&write-nar-listing=true&secret-key=/sk",
		"s3://b?scheme=http&endpoint=host:1&addressing-style=path",
		"http://[::1]:80/%2F?retry-attempts=3",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := ParseStoreURL(raw)
		if err != nil {
			return
		}
		// A valid URL re-parses to the same store (String may mask
		// secrets, which stay valid parameter values).
		u2, err := ParseStoreURL(u.String())
		if err != nil {
			t.Fatalf("String() %q of valid %q does not parse: %v", u.String(), raw, err)
		}
		if u2.Scheme != u.Scheme || u2.Host != u.Host || u2.Path != u.Path {
			t.Fatalf("round trip %q → %q changed the store", raw, u.String())
		}
		if u.user != nil {
			if pw, ok := u.user.Password(); ok && pw != "" && strings.Contains(u.String(), ":"+pw+"@") {
				t.Fatalf("String() leaks the password: %q", u.String())
			}
		}
	})
}
