package trust

import (
	"bytes"
	"context"
	"fmt"

	"golang.org/x/sync/semaphore"

	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/remote/chunkindex"
	"github.com/narfs/narfs/remote/internal/tune"
	"github.com/narfs/narfs/remote/narinfo"
	"github.com/narfs/narfs/remote/storepath"
)

// Listing is a store path's verified listing, with the chunk index it was
// decoded from when it came from one. Immutable; only VerifyNAR,
// VerifyIndex and Recorded make one.
type Listing struct {
	l      *nar.Listing
	index  *chunkindex.Index
	object []byte
	// objectSum is object's SHA-256 (chunkindex.Digest), taken once: a
	// blob's key (ChunkedKey) is asked at every open of its files, and
	// an index object can be megabytes.
	objectSum storepath.Hash
	cost      int64
}

// Tree is the verified tree.
func (l *Listing) Tree() *nar.Listing { return l.l }

// Index is the verified chunk index the listing came from, or nil (also
// for a nil Listing).
func (l *Listing) Index() *chunkindex.Index {
	if l == nil {
		return nil
	}
	return l.index
}

// Object is the index object as fetched (nil without an index).
func (l *Listing) Object() []byte {
	if l == nil {
		return nil
	}
	return l.object
}

// Cost is the memory the listing (and its index) takes.
func (l *Listing) Cost() int64 { return l.cost }

// VerifyNAR checks what was read of a NAR against p's narinfo: n bytes
// hashing to sha256 (and, with a content address, to caSum, the hash the
// address names) make l, the listing built while reading them, verified.
func VerifyNAR(p *Path, l *nar.Listing, n int64, sha256, caSum []byte) (*Listing, error) {
	ni := p.NarInfo
	if n != ni.NarSize {
		return nil, fmt.Errorf("%w: NAR is %d bytes, narinfo says NarSize %d", ErrCorrupt, n, ni.NarSize)
	}
	if !bytes.Equal(sha256, ni.NarHash.Digest) {
		return nil, fmt.Errorf("%w: NAR hash mismatch: expected %s, got sha256:%s", ErrCorrupt, ni.NarHash, storepath.EncodeNix32(sha256))
	}
	if p.CA != nil && !bytes.Equal(caSum, p.CA.hash.Digest) {
		return nil, fmt.Errorf("%w: content hash does not match CA %s", ErrCorrupt, ni.CA)
	}
	return &Listing{l: l, cost: l.MemSize()}, nil
}

// Recorded decodes the listing.json of a local entry. The entry's key
// (EntryKey) proves its NAR passed VerifyNAR for these contents: entries
// are committed only after it, in a cache dir the local cache checked is
// ours. A decode error is returned as is (the caller's disk is at fault).
func Recorded(listingJSON []byte) (*Listing, error) {
	l, err := nar.DecodeListing(listingJSON)
	if err != nil {
		return nil, err
	}
	return &Listing{l: l, cost: l.MemSize()}, nil
}

// VerifyIndex checks a chunk index object of p: within the bound its
// NarSize allows, signed by one of keys, decoding (with dec bounding
// concurrent decodes by the listing budget listingMemory) to an index
// that matches the narinfo and fits one listing's share of that budget.
// Its errors wrap chunkindex.ErrInvalid or narinfo.ErrUntrusted.
func VerifyIndex(ctx context.Context, p *Path, object []byte, keys []narinfo.PublicKey, dec *semaphore.Weighted, listingMemory int64) (*Listing, error) {
	if bound := chunkindex.ObjectBound(p.NarInfo.NarSize); int64(len(object)) > bound {
		return nil, fmt.Errorf("%w: %d bytes, more than a NAR of %d bytes can need (%d)", chunkindex.ErrInvalid, len(object), p.NarInfo.NarSize, bound)
	}
	o, _, err := chunkindex.VerifyObject(p.NarInfo, object, keys)
	if err != nil {
		return nil, err
	}
	// Decoding takes a few times the object's decoded size: bound
	// concurrent decodes by the listing budget, as for .ls.
	weight := min(chunkindex.TextBound(p.NarInfo.NarSize), listingMemory, tune.IndexDecodeFactor*int64(len(o.Payload)))
	if err := dec.Acquire(ctx, weight); err != nil {
		return nil, err
	}
	x, err := chunkindex.DecodeFor(o.Payload, p.NarInfo.NarSize)
	dec.Release(weight)
	if err != nil {
		return nil, err
	}
	if err := x.Matches(p.NarInfo); err != nil {
		return nil, err
	}
	cost := x.Listing.MemSize() + int64(len(x.Chunks))*tune.IndexChunkCost + int64(len(object))
	if cost > listingMemory/tune.ListingShare {
		return nil, fmt.Errorf("%w: %d bytes in memory, more than a quarter of the listing budget", chunkindex.ErrInvalid, cost)
	}
	return &Listing{l: x.Listing, index: x, object: object, objectSum: chunkindex.Digest(object), cost: cost}, nil
}
