package upload

import (
	"errors"
	"fmt"
	"io"
	"math"
	"sync"

	"github.com/narfs/narfs/remote/narinfo"
)

// Temporary files and buffers are bounded by what the narinfo says, so
// that whoever can write to a cache cannot fill the disk of the machine
// that verifies or indexes it with an endless object or a decompression
// bomb: the object by objectBound, the NAR decoded from it by NarSize
// (one byte more is read, to see that there is more).

// objectBound is the most bytes the narinfo's object may have, from
// NarSize, which the signature covers (FileSize does not: it is checked,
// as a claim, once the object is read): NarSize for an uncompressed NAR,
// and for a compressed one NarSize plus 1/64 and 64 KiB. No compressor Nix
// uses expands incompressible data by nearly as much: xz and zstd store it
// in raw blocks (a few bytes per 64 or 128 KiB), gzip and brotli likewise,
// bzip2 by well under 1%; the 64 KiB are for headers and checks. So an
// object a little longer than FileSize is still read, and its NAR
// checked, but one that never ends is cut there.
func objectBound(ni *narinfo.NarInfo) int64 {
	switch {
	case ni.EffectiveCompression() == "none":
		return ni.NarSize
	case ni.NarSize > math.MaxInt64/2:
		return math.MaxInt64 - 1
	}
	return ni.NarSize + ni.NarSize/64 + 64<<10
}

// boundedReader yields at most max bytes of r and fails, rather than
// ending, once r has more: an object that goes on past its bound is an
// error, never a short success. A decompressor's feeding goroutine reads
// it, then index drains the rest from its own: mu orders the two.
type boundedReader struct {
	r    io.Reader
	what string
	max  int64

	mu   sync.Mutex // held for a whole Read
	left int64      // bytes still allowed
}

func newBoundedReader(r io.Reader, max int64, what string) *boundedReader {
	return &boundedReader{r: r, left: max, what: what, max: max}
}

func (b *boundedReader) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.left <= 0 {
		// One byte more tells an object of exactly max bytes from a
		// longer one.
		var one [1]byte
		n, err := b.r.Read(one[:])
		if n > 0 {
			return 0, fmt.Errorf("%s: %w: more than the %d bytes the narinfo allows", b.what, errTooLong, b.max)
		}
		return 0, err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	return n, err
}

// errTooLong: an object or NAR is longer than its narinfo allows.
var errTooLong = errors.New("too long")
