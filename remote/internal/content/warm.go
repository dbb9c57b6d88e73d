package content

import (
	"os"
	"time"

	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/remote/internal/tune"
)

// The blob of a fetched stock path, kept open for opens of its small
// files. A walk over a many-file path (tar, a compiler reading a package's
// sources) opens each file once: without it every open pinned the entry,
// opened and checked the blob, and every close closed it, which cost more
// than the FUSE round trip carrying the open.
//
// A warm blob holds a descriptor only, no pin, so it never holds up an
// eviction; a reader that has it goes on reading the verified bytes after
// one (as any open file does). It is closed tune.WarmLinger after its last
// reader. An open re-checks (Acquire) that the entry is still there
// whenever this process dropped any entry since the last check (the
// cache's Drops moved), and at least every tune.WarmTouch (another process
// may have evicted it), which also keeps the entry recent in the cache's
// LRU order; an entry gone is fetched again by the slow path.
type warmBlob struct {
	key  string
	f    *os.File
	size int64 // the blob's size, checked when it was opened

	// protected by Store.warmMu
	refs    int
	touched time.Time // last check that the entry is still in the cache
	drops   int64     // the cache's Drops at that check
	idle    time.Time // when refs last dropped to 0
	armed   bool      // a linger timer is pending
	closed  bool
}

// Warm opens the small file n of entry key (found in its verified
// listing) in the entry's blob if that is open already; ok false when the
// slow path must run (OpenSpan, then Share).
func (s *Store) Warm(key string, n *nar.Node) (*Span, bool) {
	if n.Type != nar.TypeRegular || n.Size >= tune.OwnFileMin || n.NarOffset <= 0 {
		return nil, false
	}
	s.warmMu.Lock()
	b := s.warm[key]
	if b == nil || n.NarOffset > b.size-n.Size {
		s.warmMu.Unlock()
		return nil, false
	}
	if now, drops := time.Now(), s.cache.Drops(); now.Sub(b.touched) >= tune.WarmTouch || drops != b.drops {
		b.touched, b.drops = now, drops
		s.warmMu.Unlock()
		e, err := s.cache.Acquire(key)
		if err != nil {
			// Evicted or removed: the slow path fetches it again and
			// opens the new blob.
			s.dropWarm(b)
			return nil, false
		}
		e.Release()
		s.warmMu.Lock()
		if b.closed {
			s.warmMu.Unlock()
			return nil, false
		}
	}
	b.refs++
	s.warmMu.Unlock()
	return &Span{File: b.f, Base: n.NarOffset, Size: n.Size, release: func() { s.releaseWarm(b) }}, true
}

// Share turns a small file just opened in its entry's blob into one
// reading a warm blob, which it becomes the descriptor of unless another
// open was first. drops is the cache's Drops from before the entry was
// found, so that a drop since makes the next open check.
func (s *Store) Share(key string, f *Span, drops int64) *Span {
	s.warmMu.Lock()
	defer s.warmMu.Unlock()
	b := s.warm[key]
	if b == nil || b.closed {
		fi, err := f.File.Stat()
		if err != nil {
			return f
		}
		b = &warmBlob{key: key, f: f.File, size: fi.Size(), touched: time.Now(), drops: drops}
		s.warm[key] = b
	} else {
		f.File.Close()
	}
	b.refs++
	return &Span{File: b.f, Base: f.Base, Size: f.Size, release: func() { s.releaseWarm(b) }}
}

func (s *Store) releaseWarm(b *warmBlob) {
	s.warmMu.Lock()
	defer s.warmMu.Unlock()
	b.refs--
	if b.refs > 0 {
		return
	}
	b.idle = time.Now()
	if !b.armed {
		b.armed = true
		time.AfterFunc(tune.WarmLinger, func() { s.lingerWarm(b) })
	}
}

// lingerWarm closes a warm blob idle for tune.WarmLinger, or waits on.
func (s *Store) lingerWarm(b *warmBlob) {
	s.warmMu.Lock()
	defer s.warmMu.Unlock()
	b.armed = false
	if b.closed || b.refs > 0 {
		return
	}
	if left := tune.WarmLinger - time.Since(b.idle); left > 0 {
		b.armed = true
		time.AfterFunc(left, func() { s.lingerWarm(b) })
		return
	}
	s.closeWarmLocked(b)
}

// dropWarm stops handing out b; readers that have it keep it until they
// close.
func (s *Store) dropWarm(b *warmBlob) {
	s.warmMu.Lock()
	defer s.warmMu.Unlock()
	if s.warm[b.key] == b {
		delete(s.warm, b.key)
	}
	if b.refs == 0 {
		s.closeWarmLocked(b)
	} else if !b.armed {
		// Its last release arms the timer that closes it.
		b.idle = time.Now()
	}
	b.touched = time.Time{}
}

func (s *Store) closeWarmLocked(b *warmBlob) {
	if s.warm[b.key] == b {
		delete(s.warm, b.key)
	}
	if !b.closed {
		b.closed = true
		b.f.Close()
	}
}

// closeWarm closes every warm blob nobody reads (Close).
func (s *Store) closeWarm() {
	s.warmMu.Lock()
	defer s.warmMu.Unlock()
	for _, b := range s.warm {
		if b.refs == 0 {
			s.closeWarmLocked(b)
		} else {
			delete(s.warm, b.key)
		}
	}
}
