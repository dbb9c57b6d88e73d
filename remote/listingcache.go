package remote

import (
	"container/list"
	"sync"

	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/remote/chunkindex"
	"github.com/narfs/narfs/remote/internal/trust"
	"github.com/narfs/narfs/remote/internal/tune"
)

// knownListing is a store path's listing with where it came from.
type knownListing struct {
	*nar.Listing
	// v, when set, is the verified listing (Listing is its tree): built
	// from the NAR after NarHash matched, or from a verified chunk index.
	// Otherwise the listing came from the unsigned .ls (or a NAR header)
	// and only describes metadata; no byte a reader gets is chosen by it.
	v    *trust.Listing
	cost int64
}

// knownVerified wraps a verified listing.
func knownVerified(v *trust.Listing) *knownListing {
	return &knownListing{Listing: v.Tree(), v: v, cost: v.Cost()}
}

func (kl *knownListing) verified() bool { return kl.v != nil }

// index is the path's verified chunk index, or nil.
func (kl *knownListing) index() *chunkindex.Index { return kl.v.Index() }

// indexObject is the object the index was decoded from.
func (kl *knownListing) indexObject() []byte { return kl.v.Object() }

// listingCache keeps listings by hash part within a byte budget, least
// recently used first out. Counting entries would let a few hostile
// 100 MB listings take gigabytes.
type listingCache struct {
	max int64 // read-only after newListingCache

	mu    sync.Mutex // protects the fields below
	items map[string]*list.Element
	lru   *list.List // front = most recent; values are *listingItem
	total int64
}

type listingItem struct {
	key string
	l   *knownListing
}

func newListingCache(max int64) *listingCache {
	return &listingCache{max: max, items: make(map[string]*list.Element), lru: list.New()}
}

// fits says whether a listing of that cost may be cached at all.
func (c *listingCache) fits(cost int64) bool { return cost <= c.max/tune.ListingShare }

func (c *listingCache) get(key string) (*knownListing, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[key]
	if !ok {
		return nil, false
	}
	c.lru.MoveToFront(el)
	return el.Value.(*listingItem).l, true
}

// add stores l under key unless a verified listing is already there: an
// unverified one never replaces what the NAR proved.
func (c *listingCache) add(key string, l *knownListing) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		it := el.Value.(*listingItem)
		if it.l.verified() && !l.verified() {
			c.lru.MoveToFront(el)
			return
		}
		c.total += l.cost - it.l.cost
		it.l = l
		c.lru.MoveToFront(el)
	} else {
		c.items[key] = c.lru.PushFront(&listingItem{key: key, l: l})
		c.total += l.cost
	}
	for c.total > c.max && c.lru.Len() > 1 {
		el := c.lru.Back()
		it := el.Value.(*listingItem)
		c.lru.Remove(el)
		delete(c.items, it.key)
		c.total -= it.l.cost
	}
}

func (c *listingCache) remove(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		c.lru.Remove(el)
		delete(c.items, key)
		c.total -= el.Value.(*listingItem).l.cost
	}
}

func (c *listingCache) usage() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total
}
