package fs

import (
	"context"
	"errors"
	"log/slog"
	"syscall"

	"github.com/narfs/narfs/remote"
)

// toErrno maps core errors to what a reader sees, logging the cause of
// anything that is not a plain miss.
func toErrno(log *slog.Logger, op, path string, err error) syscall.Errno {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, remote.ErrNotFound), errors.Is(err, remote.ErrUntrusted):
		return syscall.ENOENT
	case errors.Is(err, context.Canceled):
		return syscall.EINTR
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		log.Warn(op+" failed", "path", path, "err", err)
		return errno
	}
	log.Error(op+" failed", "path", path, "err", err)
	return syscall.EIO
}
