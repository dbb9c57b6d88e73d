package backend

import "errors"

// Sentinels callers branch on with errors.Is. Every error returned by a
// Backend also names the cache (redacted) and the key.
var (
	// ErrNotFound: the key does not exist (file ENOENT; http 404/403/410;
	// S3 NoSuchKey, NotFound, and AccessDenied as Nix treats it).
	ErrNotFound = errors.New("not found")
	// ErrUnsupported: the operation is impossible on this backend
	// (List on http).
	ErrUnsupported = errors.New("not supported")
	// ErrAuth: the credentials were rejected. Never reported as ErrNotFound,
	// so a typo in a secret does not look like an empty cache.
	ErrAuth = errors.New("authentication failed")
	// ErrInvalidKey: the key is malformed or would escape the store root.
	ErrInvalidKey = errors.New("invalid key")
	// ErrRange: a GetRange outside the object (or a server that answered
	// the range wrongly).
	ErrRange = errors.New("invalid range")
	// ErrTooLarge: ReadAll hit its size bound.
	ErrTooLarge = errors.New("object too large")
	// ErrStalled: a body made no progress for Options.StallTimeout.
	ErrStalled = errors.New("download stalled")
	// ErrTimeout: no response headers within Options.RequestTimeout.
	ErrTimeout = errors.New("request timed out")
	// ErrListing: a listing did not end (a continuation token repeated,
	// more than maxListPages pages or maxListKeys keys).
	ErrListing = errors.New("listing does not end")
)
