package remote

import "github.com/narfs/narfs/remote/stats"

// The counters' vocabulary lives in remote/stats (the upstream part
// counts, the core sums); these names keep the API until the core's own
// step replaces them.
type (
	Stats           = stats.Stats
	KindStats       = stats.KindStats
	Kind            = stats.Kind
	Outcome         = stats.Outcome
	RequestObserver = stats.Observer
)

// The kinds of upstream objects.
const (
	KindNarinfo = stats.KindNarinfo
	KindListing = stats.KindListing
	KindIndex   = stats.KindIndex
	KindNar     = stats.KindNar
	KindOther   = stats.KindOther
	NumKinds    = stats.NumKinds
)

// The outcomes of narinfo lookups.
const (
	OutcomeHit       = stats.OutcomeHit
	OutcomeMiss      = stats.OutcomeMiss
	OutcomeNegative  = stats.OutcomeNegative
	OutcomeUntrusted = stats.OutcomeUntrusted
	OutcomeError     = stats.OutcomeError
	NumOutcomes      = stats.NumOutcomes
)
