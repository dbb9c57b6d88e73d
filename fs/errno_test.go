package fs

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/narfs/narfs/remote"
)

// Readers see only what a read-only file system gives; the daemon's own
// failures (network, local disk) are EIO.
func TestErrnosReadersSee(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want syscall.Errno
	}{
		{fmt.Errorf("x: %w", remote.ErrNotFound), syscall.ENOENT},
		{fmt.Errorf("x: %w", remote.ErrUntrusted), syscall.ENOENT},
		{fmt.Errorf("x: %w", remote.ErrCorrupt), syscall.EIO},
		{fmt.Errorf("x: %w", remote.ErrBug), syscall.EIO},
		{context.Canceled, syscall.EINTR},
		{fmt.Errorf("open: %w", context.DeadlineExceeded), syscall.EIO},
		{&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, syscall.EIO},
		{&os.PathError{Op: "write", Path: "/cache/x", Err: syscall.ENOSPC}, syscall.EIO},
		{&os.PathError{Op: "open", Path: "/cache/x", Err: syscall.ENOENT}, syscall.EIO},
		{&os.PathError{Op: "open", Path: "/cache/x", Err: syscall.EACCES}, syscall.EIO},
		{errors.New("anything else"), syscall.EIO},
	} {
		if got := toErrno(discardLogger(), "open", "/nix/store/x", tc.err); got != tc.want {
			t.Errorf("%v: %v, want %v", tc.err, got, tc.want)
		}
	}
}
