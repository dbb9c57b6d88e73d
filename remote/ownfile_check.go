package remote

import (
	"github.com/narfs/narfs/remote/internal/content"
	"github.com/narfs/narfs/remote/localcache"
)

// Own files' checks live in content (ownfile.go); these names stay for
// the fetch that writes them.

// fileID is what must not change for a check of an own file to hold.
type fileID = content.FileID

var (
	errOwnMismatch   = content.ErrOwnMismatch
	errOwnUnrecorded = content.ErrOwnUnrecorded
)

// trustWritten marks the own files a fetch wrote as checked, if they are
// the ones in the committed entry (another process may have committed
// its copy first: those are checked when opened).
func (s *Store) trustWritten(e *localcache.Entry, ws []ownWritten) {
	for _, w := range ws {
		s.local.Written(e, w.name, w.id)
	}
}
