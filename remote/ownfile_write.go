package remote

import (
	"syscall"

	"github.com/narfs/narfs/remote/internal/fetch"
)

// ownWritten is an own file this process wrote from verified bytes.
type ownWritten struct {
	name string
	id   fileID
}

// ownsWritten is what trustWritten compares of the own files fetch.NAR
// wrote: their identity as written. A file whose identity is not known
// is not marked, only checked when opened.
func ownsWritten(owns []fetch.Own) []ownWritten {
	ws := make([]ownWritten, 0, len(owns))
	for _, o := range owns {
		if o.Info == nil {
			continue
		}
		st, ok := o.Info.Sys().(*syscall.Stat_t)
		if !ok {
			continue
		}
		// As idOf makes it of an open file.
		id := fileID{dev: st.Dev, ino: st.Ino, size: st.Size, mtime: st.Mtim.Sec, mtimeNs: st.Mtim.Nsec, ctime: st.Ctim.Sec, ctimeNs: st.Ctim.Nsec}
		ws = append(ws, ownWritten{name: o.Name, id: id})
	}
	return ws
}
