package remote

import (
	"github.com/narfs/narfs/remote/internal/content"
	"github.com/narfs/narfs/remote/internal/fetch"
)

// ownWritten is an own file this process wrote from verified bytes.
type ownWritten struct {
	name string
	id   content.FileID
}

// ownsWritten is what fetch compares of the own files fetch.NAR
// wrote: their identity as written. A file whose identity is not known
// is not marked, only checked when opened.
func ownsWritten(owns []fetch.Own) []ownWritten {
	ws := make([]ownWritten, 0, len(owns))
	for _, o := range owns {
		if o.Info == nil {
			continue
		}
		id, ok := content.FileIDOf(o.Info)
		if !ok {
			continue
		}
		ws = append(ws, ownWritten{name: o.Name, id: id})
	}
	return ws
}
