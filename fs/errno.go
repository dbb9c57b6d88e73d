package fs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/narfs/narfs/remote"
)

// toErrno maps core errors to what a reader of a read-only file system
// may see: ENOENT for missing or untrusted paths, EINTR for an
// interrupted request and EIO for everything else, after a log line
// saying why. Raw errnos of the daemon's own work (ECONNREFUSED, ENOSPC
// or ENOENT of the cache disk) never reach readers: they describe narfs's
// problem, not the file's. The nodes answer ENOTDIR, EISDIR, EROFS
// themselves.
func toErrno(log *slog.Logger, op, path string, err error) syscall.Errno {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, remote.ErrNotFound), errors.Is(err, remote.ErrUntrusted):
		return syscall.ENOENT
	case errors.Is(err, context.Canceled):
		return syscall.EINTR
	case errors.Is(err, context.DeadlineExceeded):
		log.Error(op+" failed: no answer within --timeout", "path", path, "err", err)
		return syscall.EIO
	}
	log.Error(op+" failed", "path", path, "err", err)
	return syscall.EIO
}

// panicHandler answers a request whose handler panicked with EIO and logs
// it as the bug it is; the mount goes on serving.
func panicHandler(log *slog.Logger) func(any) fuse.Status {
	return func(r any) fuse.Status {
		log.Error("BUG: panic in a FUSE request; answered EIO", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
		return fuse.EIO
	}
}
