package backend

import (
	"context"
	"fmt"
	"io"
	"sync"
)

// Servers that ignore Range (Python's http.server, some proxy caches)
// answer a range request with 200 and the whole object. GetRange works
// around that by reading and discarding the bytes before the range, which
// costs the object's prefix for every request; callers that can use the
// whole object as it comes (a NAR read from its start, an indexed path
// whose every chunk is wanted) ask with GetRangeOrWhole instead and get
// that body itself, so the object crosses the network once.

// RangeGetter is the part of a Backend GetRangeOrWhole needs.
type RangeGetter interface {
	GetRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error)
}

// GetRangeOrWhole is GetRange for a caller that can use the whole object
// instead: when the server ignores Range, it returns the body of its 200
// answer, the object from byte 0 as the server sent it (not cut to any
// length: the caller verifies what it reads), with whole true. A server
// that honours ranges costs exactly one GetRange; an answer with a
// Content-Encoding is never taken whole (its bytes are not the stored
// ones), and is handled as GetRange handles it.
func GetRangeOrWhole(ctx context.Context, b RangeGetter, key string, off, n int64) (rc io.ReadCloser, whole bool, err error) {
	slot := &wholeSlot{}
	rc, err = b.GetRange(context.WithValue(ctx, wholeSlotKey{}, slot), key, off, n)
	if body := slot.take(); body != nil {
		if err == nil {
			rc.Close() // a wrapper that ignored the refusal; the body is what was sent
		}
		return body, true, nil
	}
	return rc, false, err
}

// ServedWhole reports whether r, a reader from NewParallelReader, found
// that the server ignores ranges and is yielding the object from one
// whole-object answer.
func ServedWhole(r io.Reader) bool {
	pr, ok := r.(*parallelReader)
	if !ok {
		return false
	}
	pr.mu.Lock()
	defer pr.mu.Unlock()
	return pr.whole != nil
}

// wholeSlotKey marks a context whose range request may be answered with
// the whole object: a backend that gets a 200 puts the body in the slot
// and fails the request (ErrUnsupported) instead of skipping to the range.
type wholeSlotKey struct{}

// ErrWholeAnswer fails a range request of GetRangeOrWhole whose answer
// was the whole object, handed to GetRangeOrWhole's caller instead: a
// Backend decorator sees it, and should count neither a failure nor the
// end of the request's bytes (see OnWhole).
var ErrWholeAnswer = fmt.Errorf("%w: the server ignored Range and sent the whole object", ErrUnsupported)

// OnWhole registers, for the request made with ctx, a function applied to
// a whole-object answer before GetRangeOrWhole's caller gets it, so that
// a Backend decorator can wrap that body as it wraps the ones it returns
// (counting its bytes). It does nothing for other requests.
func OnWhole(ctx context.Context, wrap func(io.ReadCloser) io.ReadCloser) {
	if s, ok := ctx.Value(wholeSlotKey{}).(*wholeSlot); ok {
		s.mu.Lock()
		s.wraps = append(s.wraps, wrap)
		s.mu.Unlock()
	}
}

// wholeSlot holds one whole-object body for the caller that made it.
type wholeSlot struct {
	mu    sync.Mutex
	body  io.ReadCloser
	taken bool // the caller looked: later bodies have no one to read them
	wraps []func(io.ReadCloser) io.ReadCloser
}

// offerWhole gives body to the request's caller if its context asked for
// whole answers (and none was given yet), reporting whether it did; if
// not, the caller of offerWhole still owns body.
func offerWhole(ctx context.Context, body io.ReadCloser) bool {
	s, ok := ctx.Value(wholeSlotKey{}).(*wholeSlot)
	if !ok {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.taken || s.body != nil {
		return false
	}
	s.body = body
	return true
}

func (s *wholeSlot) take() io.ReadCloser {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.taken = true
	b := s.body
	s.body = nil
	if b != nil {
		// Innermost decorator first, as its own body would be wrapped.
		for i := len(s.wraps) - 1; i >= 0; i-- {
			b = s.wraps[i](b)
		}
	}
	return b
}
