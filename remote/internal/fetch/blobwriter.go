package fetch

import (
	"fmt"
	"os"

	"github.com/narfs/narfs/remote/localcache"
)

// blobWriter writes the NAR stream at its offsets into the blob, leaving
// a hole where a large file's contents go to a file of their own. The
// NAR reader reads ahead of what it parsed, so a few KiB of such contents
// may land in the blob too; nothing reads them there.
type blobWriter struct {
	f                *os.File
	off              int64
	skipFrom, skipTo int64
}

func (w *blobWriter) skip(off, n int64) { w.skipFrom, w.skipTo = off, off+n }

func (w *blobWriter) Write(p []byte) (int, error) {
	start, end := w.off, w.off+int64(len(p))
	w.off = end
	put := func(from, to int64) error {
		if from >= to {
			return nil
		}
		if _, err := w.f.WriteAt(p[from-start:to-start], from); err != nil {
			return fmt.Errorf("%w: %w", localcache.ErrLocal, err)
		}
		return nil
	}
	if err := put(start, min(end, max(start, w.skipFrom))); err != nil {
		return 0, err
	}
	if err := put(max(start, min(end, w.skipTo)), end); err != nil {
		return 0, err
	}
	return len(p), nil
}
