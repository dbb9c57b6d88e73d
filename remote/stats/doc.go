// Package stats is the vocabulary of narfs's counters: what was asked of
// each binary cache (requests, failures and bytes by kind of object),
// how narinfo lookups ended, and what the local cache did. The upstream
// part of the core counts (remote/internal/upstream); the core sums its
// caches and lists each one's upstream traffic (Stats.Caches); metrics
// and `narfs info` read them. It has no behaviour of its own, so every
// layer may import it.
package stats
