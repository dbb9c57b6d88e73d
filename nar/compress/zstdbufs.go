package compress

import "sync"

// bufList recycles the buffers of decoded or compressed frames: Nix's
// frames are all the same size, and fresh 16 MiB buffers cost page faults
// and zeroing. A stream keeps a few for itself (a sync.Pool loses its
// contents at every GC, and 16 MiB buffers make GCs frequent) and leaves
// them to the pool, shared by streams, when it closes.
type bufList struct {
	own  chan []byte
	pool *sync.Pool
}

var zstdOutPool, zstdCompPool sync.Pool

func newBufList(pool *sync.Pool) bufList {
	return bufList{own: make(chan []byte, zstdMaxWorkers), pool: pool}
}

func (l bufList) get() []byte {
	select {
	case b := <-l.own:
		return b
	default:
	}
	if b, ok := l.pool.Get().(*[]byte); ok {
		return (*b)[:0]
	}
	return nil
}

func (l bufList) put(b []byte) {
	if cap(b) == 0 {
		return
	}
	select {
	case l.own <- b[:0]:
	default:
		l.pool.Put(&b)
	}
}

// release hands the stream's buffers to the pool.
func (l bufList) release() {
	for {
		select {
		case b := <-l.own:
			l.pool.Put(&b)
		default:
			return
		}
	}
}
