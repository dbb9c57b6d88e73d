package content

import (
	"bufio"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/remote/internal/layout"
	"github.com/narfs/narfs/remote/internal/trust"
	"github.com/narfs/narfs/remote/internal/tune"
	"github.com/narfs/narfs/remote/localcache"
)

// publishOwn gives a completely fetched large file a file of its own.
func (s *Store) publishOwn(r *Blob, p *trust.Path, o Origin, n *nar.Node) {
	x := r.b.Index()
	first, last := x.Span(n.NarOffset, n.Size)
	if n.Size < tune.OwnFileMin || !r.b.Complete(first, last) {
		return
	}
	select {
	case s.publishSem <- struct{}{}:
	default:
		return // busy: the next reader will
	}
	s.blobsMu.Lock()
	if s.bg.Err() != nil {
		s.blobsMu.Unlock()
		<-s.publishSem
		return // closing
	}
	r.refs++ // the blob stays open while it is copied from
	s.publishing.Add(1)
	s.blobsMu.Unlock()
	go func() {
		defer s.publishing.Done()
		defer func() { <-s.publishSem }()
		defer s.ReleaseBlob(r)
		if err := s.copyOwn(r, n); err != nil {
			o.Log.Warn("giving a large file a file of its own", "path", p.StorePath.String(), "err", err)
		}
	}()
}

// openOwn opens the file of its own of a large file of an indexed path,
// or returns nil if it has none yet or the one there does not match its
// recorded hash (which is then removed, to be copied again).
func (s *Store) openOwn(r *Blob, p *trust.Path, o Origin, n *nar.Node) *Span {
	name := layout.OwnFileName(n.NarOffset)
	lf, err := r.e.OpenRead(name)
	if err != nil {
		return nil
	}
	fi, err := lf.Stat()
	if err == nil && fi.Size() != n.Size {
		err = fmt.Errorf("%s: %w: %w: %d bytes, the signed listing says %d", name, localcache.ErrLocal, ErrOwnMismatch, fi.Size(), n.Size)
	}
	if err == nil {
		err = s.checkOwn(r.e, name, lf, n.Size)
	}
	if err == nil {
		return &Span{File: lf, Size: n.Size}
	}
	lf.Close()
	if errors.Is(err, ErrOwnMismatch) {
		o.Counters.Corrupt()
		o.Log.Error("a large file's copy in the local cache does not match what was verified; not served, reading it by chunks", "path", p.StorePath.String(), "cache-dir", s.o.Dir, "err", err)
		r.e.RemoveData(name)
		r.e.RemoveData(layout.OwnSumName(name))
	}
	return nil
}

// copyOwn copies a complete large file of the blob into a file of its
// own, unless it has one, and then records the hash of the bytes it
// copied (each chunk verified on the way, CopyTo): a reader that finds
// the copy without its record does not use it. The copy is marked
// checked (published): this process made it from verified bytes, and
// hashing it again at its next open would cost a pass over it.
func (s *Store) copyOwn(r *Blob, n *nar.Node) error {
	name := layout.OwnFileName(n.NarOffset)
	if f, err := r.e.OpenRead(name); err == nil {
		f.Close()
		if _, err := r.e.ReadMeta(layout.OwnSumName(name)); err == nil {
			return nil
		}
		// A copy without its record (the copier stopped between the
		// two): copy again.
		if err := r.e.RemoveData(name); err != nil {
			return err
		}
	}
	sum := sha256.New()
	var id FileID
	err := r.e.PublishData(name, func(f *os.File) error {
		bw := bufio.NewWriterSize(io.MultiWriter(f, sum), tune.PublishBuffer)
		if err := r.b.CopyTo(bw, n.NarOffset, n.Size); err != nil {
			return err
		}
		if err := bw.Flush(); err != nil {
			return err
		}
		var err error
		id, err = IDOf(f)
		return err
	})
	if err != nil {
		return err
	}
	err = r.e.PublishData(layout.OwnSumName(name), func(f *os.File) error {
		_, err := f.Write(layout.EncodeSum(sum.Sum(nil)))
		return err
	})
	if err == nil {
		s.published(r.e, name, id)
	}
	return err
}
