package compress

import (
	"os"
	"syscall"
)

// fSetPipeSz is F_SETPIPE_SZ from <fcntl.h>, missing from package syscall.
const fSetPipeSz = 1031

// setPipeSize enlarges a pipe's kernel buffer. Failure (an unprivileged
// process over /proc/sys/fs/pipe-max-size) only costs speed.
func setPipeSize(f *os.File) {
	if rc, err := f.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) {
			_, _, _ = syscall.Syscall(syscall.SYS_FCNTL, fd, fSetPipeSz, pipeSize)
		})
	}
}
