package remote

import (
	"crypto/sha256"
	"hash"
	"sync"
)

// ownWritten is an own file this process wrote from verified bytes.
type ownWritten struct {
	name string
	id   fileID
}

// asyncSum is a SHA-256 computed on a goroutine of its own: a fetch's
// parse-and-write stage hands it the large files' bytes (copied, 4
// buffers deep) instead of hashing them itself, so that the extra hash
// runs beside the NAR's own instead of after each write. End it with Sum.
type asyncSum struct {
	ch   chan *[]byte
	done chan struct{}
	h    hash.Hash
}

var sumBufs = sync.Pool{New: func() any { b := make([]byte, 0, 256<<10); return &b }}

func newAsyncSum() *asyncSum {
	a := &asyncSum{ch: make(chan *[]byte, 4), done: make(chan struct{}), h: sha256.New()}
	go a.run()
	return a
}

func (a *asyncSum) run() {
	defer close(a.done)
	for b := range a.ch {
		a.h.Write(*b)
		sumBufs.Put(b)
	}
}

func (a *asyncSum) Write(p []byte) (int, error) {
	b := sumBufs.Get().(*[]byte)
	*b = append((*b)[:0], p...)
	a.ch <- b
	return len(p), nil
}

// Sum waits for the bytes written and returns their hash.
func (a *asyncSum) Sum() []byte {
	close(a.ch)
	<-a.done
	return a.h.Sum(nil)
}
