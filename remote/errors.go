package remote

import (
	"github.com/narfs/narfs/remote/backend"
	"github.com/narfs/narfs/remote/internal/flight"
	"github.com/narfs/narfs/remote/internal/trust"
	"github.com/narfs/narfs/remote/narinfo"
)

var (
	// ErrNotFound: the cache does not hold the path, or the name is not a
	// valid store path, or the sub-path does not exist inside it.
	ErrNotFound = backend.ErrNotFound
	// ErrUntrusted: the path exists but no trusted signature (or genuine
	// content address) vouches for it.
	ErrUntrusted = narinfo.ErrUntrusted
	// ErrCorrupt: what the cache served failed verification (hash, size,
	// malformed NAR or narinfo, listing disagreeing with the NAR).
	ErrCorrupt = trust.ErrCorrupt
	// ErrBug marks a panic inside narfs that was caught: a bug, logged
	// with its stack, answered as a plain I/O error.
	ErrBug = flight.ErrBug
)
