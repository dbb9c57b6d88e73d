package fetch

import (
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"sync"

	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/remote/internal/layout"
	"github.com/narfs/narfs/remote/localcache"
)

// writeOwnFile writes a large file's contents to a file of its own and
// the record of their hash beside it. Both become part of the entry only
// if the whole NAR verifies.
func writeOwnFile(pend *localcache.Pending, h *nar.Header, content io.Reader, buf []byte) (Own, error) {
	name := layout.OwnFileName(h.Offset)
	f, err := pend.CreateFile(name)
	if err != nil {
		return Own{}, err
	}
	sum := newAsyncSum()
	n, err := io.CopyBuffer(io.MultiWriter(f, sum), content, buf)
	digest := sum.Sum()
	if err == nil && n != h.Size {
		err = fmt.Errorf("%s: short file contents", h.Path)
	}
	w := Own{Name: name}
	if err == nil {
		// What the reader's check of the committed file compares (its
		// identity), taken while the file is still the one written.
		if w.Info, err = f.Stat(); err != nil {
			err = fmt.Errorf("%w: %w", localcache.ErrLocal, err)
		}
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("%w: %w", localcache.ErrLocal, cerr)
	}
	if err == nil {
		err = pend.WriteMeta(layout.OwnSumName(name), layout.EncodeSum(digest))
	}
	return w, err
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
