package pathstate

// Lock order: Table.mu and Table.subsMu are never held together, and
// subscribers run with neither held: notify copies the subscriber list
// under subsMu and calls it after SetVerified has released mu, so a
// subscriber may call back into the Table (Gen, Get).

import (
	"container/list"
	"sync"

	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/remote/internal/trust"
	"github.com/narfs/narfs/remote/internal/tune"
)

// State is what is known of one path. Immutable: a Table replaces it.
type State struct {
	// Unverified is the cache's .ls listing: metadata only.
	Unverified *nar.Listing
	// Peeked is the root read from the NAR's header: metadata only.
	Peeked *nar.Node
	// Verified is the listing built from the NAR after its NarHash
	// matched, or from a verified chunk index.
	Verified *trust.Listing
	// cost is the bytes Unverified or Verified takes in memory.
	cost int64
}

// Tree is the best listing known: the verified one, else the unverified
// one, else nil.
func (s State) Tree() *nar.Listing {
	if s.Verified != nil {
		return s.Verified.Tree()
	}
	return s.Unverified
}

// Root is the best root known: of Tree, else the peeked one, else nil.
func (s State) Root() *nar.Node {
	if l := s.Tree(); l != nil {
		return l.Root
	}
	return s.Peeked
}

// handed is what callers were shown of one path before it was verified.
type handed struct {
	gen  uint64
	root *nar.Node    // a root shown (peeked, or of an unverified tree)
	tree *nar.Listing // an unverified tree shown, nil if none
	done bool         // verified: later verifications change nothing
}

// Table keeps the state of one cache's paths by hash part, within a byte
// budget. Safe for concurrent use.
type Table struct {
	max int64 // read-only after New

	mu     sync.Mutex // protects the fields below (not subs)
	items  map[string]*list.Element
	lru    *list.List // front = most recent; values are *item
	total  int64
	handed map[string]*handed

	subsMu sync.Mutex // protects subs, next
	subs   map[int]func(hash string, gen uint64)
	next   int
}

type item struct {
	hash string
	st   State
}

// New makes a Table holding at most listingMemory bytes of listings.
func New(listingMemory int64) *Table {
	return &Table{
		max:    listingMemory,
		items:  make(map[string]*list.Element),
		lru:    list.New(),
		handed: make(map[string]*handed),
		subs:   make(map[int]func(string, uint64)),
	}
}

// Fits says whether a listing of that cost may be kept at all: a few
// hostile huge listings must not push every other one out.
func (t *Table) Fits(cost int64) bool { return cost <= t.max/tune.ListingShare }

// Get is hash's state, if any is known.
func (t *Table) Get(hash string) (State, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	el, ok := t.items[hash]
	if !ok {
		return State{}, false
	}
	t.lru.MoveToFront(el)
	return el.Value.(*item).st, true
}

// Usage is the bytes of listings kept.
func (t *Table) Usage() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.total
}

// Remove forgets hash's listings (its entry turned out corrupt or
// evicted). What was handed stays: the generation does not move.
func (t *Table) Remove(hash string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if el, ok := t.items[hash]; ok {
		t.lru.Remove(el)
		delete(t.items, hash)
		t.total -= el.Value.(*item).st.cost
	}
}

// SetUnverified keeps l, hash's unverified listing of that cost, unless
// a verified listing is known: an unverified one never replaces what
// the NAR proved.
func (t *Table) SetUnverified(hash string, l *nar.Listing, cost int64) {
	t.update(hash, func(st State) (State, bool) {
		if st.Verified != nil {
			return st, false
		}
		st.Unverified, st.cost = l, cost
		return st, true
	})
}

// SetPeeked keeps n, hash's root read from its NAR header.
func (t *Table) SetPeeked(hash string, n *nar.Node) {
	t.update(hash, func(st State) (State, bool) {
		if st.Verified != nil || st.Unverified != nil {
			return st, false
		}
		st.Peeked = n
		return st, true
	})
}

// update replaces hash's state by what f makes of it (false: unchanged)
// and evicts least recently used states over the budget.
func (t *Table) update(hash string, f func(State) (State, bool)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	el, ok := t.items[hash]
	var old State
	if ok {
		old = el.Value.(*item).st
		t.lru.MoveToFront(el)
	}
	st, changed := f(old)
	if !changed {
		return
	}
	if ok {
		el.Value.(*item).st = st
	} else {
		t.items[hash] = t.lru.PushFront(&item{hash: hash, st: st})
	}
	t.total += st.cost - old.cost
	for t.total > t.max && t.lru.Len() > 1 {
		el := t.lru.Back()
		it := el.Value.(*item)
		t.lru.Remove(el)
		delete(t.items, it.hash)
		t.total -= it.st.cost
	}
}

// Handed records that a caller was shown hash's unverified metadata:
// root (a peeked or unverified root), and tree when a whole unverified
// listing was shown (nil otherwise). It returns hash's generation, as
// Gen. The record lives until Forget. A caller that read the unverified
// state just before hash was verified hands it in after: it is then
// compared with the verified listing at once, and a contradiction moves
// the generation (and tells the subscribers) as SetVerified would have.
func (t *Table) Handed(hash string, root *nar.Node, tree *nar.Listing) uint64 {
	t.mu.Lock()
	h := t.handed[hash]
	var v *trust.Listing
	if el, ok := t.items[hash]; ok {
		v = el.Value.(*item).st.Verified
	}
	if h != nil && h.done || h == nil && v != nil {
		gen := uint64(0)
		if h != nil {
			gen = h.gen
		}
		if v == nil || !contradicts(root, tree, v) {
			t.mu.Unlock()
			return gen
		}
		if h == nil {
			h = &handed{done: true}
			t.handed[hash] = h
		}
		h.gen++
		gen = h.gen
		t.mu.Unlock()
		t.notify(hash, gen)
		return gen
	}
	defer t.mu.Unlock()
	if h == nil {
		h = &handed{}
		t.handed[hash] = h
	}
	if root != nil {
		h.root = root
	}
	if tree != nil {
		h.tree = tree
	}
	return h.gen
}

// contradicts tells whether what was shown (root, tree; either may be
// nil) disagrees with the verified listing.
func contradicts(root *nar.Node, tree *nar.Listing, v *trust.Listing) bool {
	return root != nil && !sameRoot(root, v.Tree().Root) ||
		tree != nil && !nar.SameTree(tree.Root, v.Tree().Root)
}

// SetVerified keeps v, hash's verified listing, and tells whether it
// contradicts the unverified metadata handed out (Handed) or the
// unverified listing kept: then hash's generation moves, and the
// subscribers are told (on this goroutine, before SetVerified returns)
// when anything was handed.
func (t *Table) SetVerified(hash string, v *trust.Listing) (gen uint64, contradicted bool) {
	var kept State
	t.update(hash, func(st State) (State, bool) {
		kept = st
		st = State{Verified: v, cost: v.Cost()}
		return st, true
	})
	if kept.Verified == nil {
		contradicted = kept.Unverified != nil && !nar.SameTree(kept.Unverified.Root, v.Tree().Root) ||
			kept.Peeked != nil && !sameRoot(kept.Peeked, v.Tree().Root)
	}
	t.mu.Lock()
	h := t.handed[hash]
	moved := false
	if h != nil && !h.done {
		shown := contradicts(h.root, h.tree, v)
		h.root, h.tree, h.done = nil, nil, true
		if shown {
			h.gen++
			moved = true
			contradicted = true
		} else if h.gen == 0 {
			// Nothing moved: the record would only say gen 0, as no
			// record does. Dropping it bounds the table by the lies.
			delete(t.handed, hash)
		}
	}
	if h != nil {
		gen = h.gen
	}
	t.mu.Unlock()
	if moved {
		t.notify(hash, gen)
	}
	return gen, contradicted
}

// sameRoot compares a root shown before (from a NAR header its
// directory has no entries) with the verified one.
func sameRoot(a, b *nar.Node) bool {
	if a.Type == nar.TypeDirectory && a.Entries == nil {
		return b.Type == nar.TypeDirectory
	}
	return nar.SameTree(a, b)
}

// Gen is hash's generation: read it before answering from its metadata,
// and compare after (a verification in between moved it).
func (t *Table) Gen(hash string) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if h := t.handed[hash]; h != nil {
		return h.gen
	}
	return 0
}

// Forget drops what was handed of hash: the caller no longer shows it.
// Its generation restarts at 0, so a caller forgets only paths it no
// longer holds any answer of.
func (t *Table) Forget(hash string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.handed, hash)
}

// Subscribe calls fn(hash, gen) whenever a generation moves, until the
// returned cancel is called.
func (t *Table) Subscribe(fn func(hash string, gen uint64)) (cancel func()) {
	t.subsMu.Lock()
	defer t.subsMu.Unlock()
	id := t.next
	t.next++
	t.subs[id] = fn
	return func() {
		t.subsMu.Lock()
		defer t.subsMu.Unlock()
		delete(t.subs, id)
	}
}

func (t *Table) notify(hash string, gen uint64) {
	t.subsMu.Lock()
	fns := make([]func(string, uint64), 0, len(t.subs))
	for _, fn := range t.subs {
		fns = append(fns, fn)
	}
	t.subsMu.Unlock()
	for _, fn := range fns {
		fn(hash, gen)
	}
}
