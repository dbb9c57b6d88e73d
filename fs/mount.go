package fs

import (
	"fmt"
	"log"
	"log/slog"
	"os"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/narfs/narfs/remote"
)

// Options are the mount's knobs.
type Options struct {
	AllowOther bool
	// Passthrough lets the kernel read cached files directly (Linux ≥ 6.9,
	// root); off, every read is a FUSE request.
	Passthrough bool
	// NoOpen answers the first OPEN with ENOSYS, after which the kernel
	// sends no OPEN, RELEASE or FLUSH for any file of the mount (Linux's
	// no-open mode) and keeps every file's page cache: a warm walk of
	// many small files costs no round trip per file. Reads then all go
	// through narfs (no passthrough), and an open never fails: errors
	// of a cold path come with its first read.
	NoOpen bool
	Debug  bool
	Logger *slog.Logger
	// Metrics, if set, is told every operation and the bytes served.
	Metrics Metrics
}

const (
	// Store paths never change: let the kernel keep what it saw.
	entryTimeout = 24 * time.Hour
	// A path missing now may be pushed later; the store itself remembers
	// misses for its NegativeTTL.
	negativeTimeout = time.Minute
	// The largest read the kernel sends, the core's bound too.
	maxRead = remote.MaxRead
)

// Server is a mounted narfs.
type Server struct {
	*fuse.Server
	st *mountState
}

// Wait returns once the mount is gone and every file narfs held open for
// it is closed.
func (s *Server) Wait() {
	s.Server.Wait()
	s.st.unsubscribe()
	s.st.closeShared()
}

// Mount serves store at mountpoint until the returned server is unmounted.
func Mount(mountpoint string, store *remote.Core, o Options) (*Server, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	st := newMountState(store, o.Logger, o)
	root := st.root
	et, nt := entryTimeout, negativeTimeout
	opts := &fs.Options{
		EntryTimeout:    &et,
		AttrTimeout:     &et,
		NegativeTimeout: &nt,
		RootStableAttr:  &fs.StableAttr{Ino: 1},
		MountOptions: fuse.MountOptions{
			FsName:               "narfs:" + store.URL(),
			Name:                 "narfs",
			AllowOther:           o.AllowOther,
			MaxWrite:             maxRead,
			MaxReadAhead:         maxRead,
			MaxBackground:        128,
			EnableSymlinkCaching: true,
			DisableXAttrs:        true,
			Debug:                o.Debug,
			// Microseconds: what a request waited is the point of
			// reading this log.
			Logger:       log.New(os.Stderr, "", log.LstdFlags|log.Lmicroseconds),
			PanicHandler: panicHandler(o.Logger),
			// The kernel answers every write, create, chmod and rename
			// with EROFS before asking us.
			Options: []string{"ro", "default_permissions"},
		},
	}
	server, err := fs.Mount(mountpoint, root, opts)
	if err != nil {
		st.unsubscribe()
		return nil, fmt.Errorf("mount %s: %w", mountpoint, err)
	}
	return &Server{Server: server, st: st}, nil
}
