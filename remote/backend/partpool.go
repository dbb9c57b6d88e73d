package backend

import (
	"sync"
	"time"
)

// PartPool lends the part buffers of parallel readers, all of one size,
// so that every download of a process together holds a bounded amount of
// memory, and buffers are reused from part to part and from object to
// object instead of becoming garbage (which a garbage collector lets pile
// up to twice the live heap before it runs).
//
// A reader that holds no buffer is always given one, beyond the bound if
// need be: a download never waits for another's memory, so one slow
// server cannot stall the readers of other objects. Memory is therefore
// at most Max bytes plus one part per reader in flight.
type PartPool struct {
	size int64 // of each buffer
	max  int   // buffers lent or kept free, at most

	mu   sync.Mutex
	free [][]byte
	lent int // buffers charged to the pool, held by readers
	idle *time.Timer
}

// poolIdle is how long free buffers are kept once no reader holds one.
const poolIdle = 30 * time.Second

// NewPartPool returns a pool of buffers of partSize bytes holding at most
// maxBytes in all (at least one buffer).
func NewPartPool(partSize, maxBytes int64) *PartPool {
	partSize = max(partSize, 1)
	n := int(min(max(maxBytes/partSize, 1), 1<<20))
	return &PartPool{size: partSize, max: n}
}

// PartSize is the size of the pool's buffers.
func (p *PartPool) PartSize() int64 { return p.size }

// get returns a buffer of PartSize bytes, or nil when the pool's bound is
// reached — unless must is set (the caller holds none), when it allocates
// one beyond the bound. charged says whether the buffer counts against
// the bound; put must be given the same.
func (p *PartPool) get(must bool) (buf []byte, charged bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := len(p.free); n > 0 {
		buf = p.free[n-1]
		p.free[n-1] = nil
		p.free = p.free[:n-1]
		p.lent++
		p.stopIdleLocked()
		return buf, true
	}
	if p.lent < p.max {
		p.lent++
		p.stopIdleLocked()
		return make([]byte, p.size), true
	}
	if must {
		return make([]byte, p.size), false
	}
	return nil, false
}

// put returns a buffer from get. Free buffers are kept for the next part
// while there is room, and dropped once no reader has held one for
// poolIdle.
func (p *PartPool) put(buf []byte, charged bool) {
	if int64(cap(buf)) != p.size {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if charged {
		p.lent--
	}
	if p.lent+len(p.free) < p.max {
		p.free = append(p.free, buf[:p.size])
	}
	if p.lent == 0 && len(p.free) > 0 && p.idle == nil {
		p.idle = time.AfterFunc(poolIdle, p.trim)
	}
}

func (p *PartPool) stopIdleLocked() {
	if p.idle != nil {
		p.idle.Stop()
		p.idle = nil
	}
}

// trim drops the free buffers if still no reader holds one.
func (p *PartPool) trim() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.idle = nil
	if p.lent == 0 {
		p.free = nil
	}
}

// stats reports buffers lent and free, for tests.
func (p *PartPool) stats() (lent, free int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lent, len(p.free)
}
