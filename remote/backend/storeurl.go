package backend

import (
	"errors"
	"fmt"
	"net/url"
	"path"
	"sort"
	"strconv"
	"strings"
)

// StoreURL is a parsed and validated Nix binary-cache store URL.
type StoreURL struct {
	Raw    string // as given
	Scheme string // "s3", "http", "https", "file"
	Host   string // bucket for s3, host[:port] for http(s), "" for file
	Path   string // directory for file, URL prefix for http(s) (no trailing slash), "" for s3
	// Params are the Nix store parameters, validated by ParseStoreURL.
	Params url.Values

	user *url.Userinfo // http(s) basic auth from the URL; never printed
}

// paramKind says on which schemes a store parameter is accepted.
type paramKind int

const (
	anyStore  paramKind = iota // every binary-cache store
	httpAndS3                  // HTTP settings; S3 ≥2.33 is an HTTP store
	s3Only
)

// storeParams lists every setting Nix accepts on a binary-cache store URL
// (spec §5). Upload-only settings are accepted and ignored: the same URL is
// typically shared with `nix copy`. Nix only warns about unknown names; we
// fail, because a typo such as `regoin` silently reads the wrong region.
var storeParams = map[string]paramKind{
	// all stores
	"priority": anyStore, "want-mass-query": anyStore, "trusted": anyStore,
	"path-info-cache-size": anyStore, "system-features": anyStore, "store": anyStore,
	"real": anyStore, "state": anyStore, "log": anyStore,
	// binary-cache stores
	"compression": anyStore, "write-nar-listing": anyStore, "index-debug-info": anyStore,
	"secret-key": anyStore, "secret-keys": anyStore, "local-nar-cache": anyStore,
	"parallel-compression": anyStore, "compression-level": anyStore,
	"narinfo-compression": anyStore, "ls-compression": anyStore, "log-compression": anyStore,
	"upgrade-checks": anyStore, // harmless; some wrappers add it
	// http(s), inherited by s3 from Nix 2.33
	"tls-certificate": httpAndS3, "tls-private-key": httpAndS3,
	"retry-attempts": httpAndS3, "retry-delay": httpAndS3,
	"retry-delay-rate-limited": httpAndS3, "retry-max-delay": httpAndS3,
	// s3
	"region": s3Only, "aws-region": s3Only, "endpoint": s3Only, "profile": s3Only,
	"scheme": s3Only, "addressing-style": s3Only, "multipart-upload": s3Only,
	"buffer-size": s3Only, "multipart-chunk-size": s3Only, "multipart-threshold": s3Only,
	"storage-class": s3Only,
}

// secretParams have their values hidden by String. secret-key is normally
// a file name, but Nix also accepts inline keys in some versions.
var secretParams = map[string]bool{"secret-key": true, "secret-keys": true}

// ParseStoreURL parses a store URL of the forms file:///abs/dir,
// http(s)://host[:port][/prefix] and s3://bucket, and validates its query
// parameters.
func ParseStoreURL(raw string) (*StoreURL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error repeats the raw URL, credentials included; keep only
		// the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("store URL: %w", err)
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, fmt.Errorf("store URL: query: %w", err)
	}
	s := &StoreURL{Raw: raw, Scheme: strings.ToLower(u.Scheme), Host: u.Host, Params: q, user: u.User}
	red := s.redacted()
	switch s.Scheme {
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return nil, fmt.Errorf("store URL %s: file URL needs an absolute path (file:///dir), got host %q", red, u.Host)
		}
		if u.Opaque != "" || !path.IsAbs(u.Path) {
			return nil, fmt.Errorf("store URL %s: file URL needs an absolute path (file:///dir)", red)
		}
		if strings.ContainsFunc(u.Path, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return nil, fmt.Errorf("store URL %s: control character in the directory name", red)
		}
		s.Host = ""
		s.Path = path.Clean(u.Path)
	case "http", "https":
		if u.Host == "" {
			return nil, fmt.Errorf("store URL %s: missing host", red)
		}
		s.Path = strings.TrimRight(u.EscapedPath(), "/")
	case "s3":
		if u.Host == "" {
			return nil, fmt.Errorf("store URL %s: missing bucket (s3://BUCKET)", red)
		}
		if u.User != nil {
			return nil, fmt.Errorf("store URL %s: credentials do not belong in an s3 URL; use the AWS credential chain or profile=", red)
		}
		if u.Path != "" && u.Path != "/" {
			return nil, fmt.Errorf("store URL %s: s3 stores have no key prefix, got path %q", red, u.Path)
		}
	case "":
		return nil, fmt.Errorf("store URL %q: missing scheme (file://, http://, https://, s3://)", red)
	default:
		return nil, fmt.Errorf("store URL %s: unsupported scheme %q (want file, http, https or s3)", red, u.Scheme)
	}
	if err := s.validateParams(); err != nil {
		return nil, fmt.Errorf("store URL %s: %w", red, err)
	}
	return s, nil
}

func (s *StoreURL) validateParams() error {
	names := make([]string, 0, len(s.Params))
	for k := range s.Params {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		kind, ok := storeParams[k]
		switch {
		case !ok:
			return fmt.Errorf("unknown store parameter %q", k)
		case kind == s3Only && s.Scheme != "s3":
			return fmt.Errorf("store parameter %q is only valid for s3:// stores", k)
		case kind == httpAndS3 && s.Scheme == "file":
			return fmt.Errorf("store parameter %q is only valid for http(s):// and s3:// stores", k)
		}
		if len(s.Params[k]) > 1 {
			return fmt.Errorf("store parameter %q given %d times", k, len(s.Params[k]))
		}
		if err := validateParam(k, s.Params.Get(k)); err != nil {
			return fmt.Errorf("store parameter %s=%q: %w", k, s.Params.Get(k), err)
		}
	}
	if s.Params.Has("region") && s.Params.Has("aws-region") && s.Params.Get("region") != s.Params.Get("aws-region") {
		return fmt.Errorf("store parameters region and aws-region disagree")
	}
	return nil
}

func validateParam(k, v string) error {
	switch k {
	case "priority", "compression-level", "path-info-cache-size", "retry-attempts",
		"retry-delay", "retry-delay-rate-limited", "retry-max-delay",
		"buffer-size", "multipart-chunk-size", "multipart-threshold":
		if _, err := strconv.ParseInt(v, 10, 64); err != nil {
			return fmt.Errorf("not an integer")
		}
	case "want-mass-query", "trusted", "write-nar-listing", "index-debug-info",
		"parallel-compression", "multipart-upload":
		switch v {
		case "true", "false", "1", "0":
		default:
			return fmt.Errorf("not a boolean (true/false)")
		}
	case "scheme":
		if v != "http" && v != "https" {
			return fmt.Errorf("want http or https")
		}
	case "addressing-style":
		if v != "auto" && v != "path" && v != "virtual" {
			return fmt.Errorf("want auto, path or virtual")
		}
	case "region", "aws-region", "profile":
		if v == "" {
			return fmt.Errorf("empty")
		}
	case "endpoint":
		if _, err := endpointURL(v, "https"); err != nil {
			return err
		}
	}
	return nil
}

// endpointURL turns an s3 endpoint parameter (full URL, or a bare
// host[:port] taking scheme) into a base URL.
func endpointURL(ep, scheme string) (string, error) {
	if ep == "" {
		return "", fmt.Errorf("empty endpoint")
	}
	if !strings.Contains(ep, "://") {
		ep = scheme + "://" + ep
	}
	u, err := url.Parse(ep)
	if err != nil {
		return "", fmt.Errorf("bad endpoint: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("bad endpoint %q: want host[:port] or http(s)://host[:port]", ep)
	}
	if u.User != nil {
		return "", fmt.Errorf("bad endpoint: credentials in endpoint URL")
	}
	return u.String(), nil
}

// String is the store URL with credentials removed: userinfo is dropped and
// secret parameters are masked.
func (s *StoreURL) String() string {
	base := s.base()
	if len(s.Params) == 0 {
		return base
	}
	q := url.Values{}
	for k, vs := range s.Params {
		for _, v := range vs {
			if secretParams[k] {
				v = "REDACTED"
			}
			q.Add(k, v)
		}
	}
	return base + "?" + q.Encode()
}

// base is scheme://host/path: what errors and logs name the cache by.
func (s *StoreURL) base() string {
	switch s.Scheme {
	case "file":
		return "file://" + s.Path
	case "s3":
		return "s3://" + s.Host
	}
	return s.Scheme + "://" + s.Host + s.Path
}

// redacted is used while parsing, before the fields are final.
func (s *StoreURL) redacted() string {
	u, err := url.Parse(s.Raw)
	if err != nil {
		return "<unparsable URL>"
	}
	u.User = nil
	u.RawQuery = ""
	u.Fragment = ""
	return u.String()
}
