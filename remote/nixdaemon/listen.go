package nixdaemon

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// ListenUnix listens on a Unix socket at path whose mode is perm from the
// moment it can be reached: the socket is bound in a private (0700)
// directory beside path, given its mode there and then renamed into
// place, so no client ever finds it with the umask's mode. A stale socket
// at path (left by a daemon that died) is replaced; any other file there
// is an error. Closing the listener removes the socket.
func ListenUnix(path string, perm fs.FileMode) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("nix daemon socket %s: exists and is not a socket", path)
		}
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, fmt.Errorf("nix daemon socket %s: in use by another daemon", path)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("nix daemon socket: %w", err)
	}
	dir, err := os.MkdirTemp(filepath.Dir(path), ".narfs-socket-")
	if err != nil {
		return nil, fmt.Errorf("nix daemon socket: %w", err)
	}
	defer os.RemoveAll(dir)
	tmp := filepath.Join(dir, "s")
	ln, err := net.Listen("unix", tmp)
	if err != nil {
		return nil, fmt.Errorf("nix daemon socket: %w", err)
	}
	ul := ln.(*net.UnixListener)
	// Closing removes the socket at the path it was bound to, which would
	// be the temporary one: narfs removes the final path itself.
	ul.SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, perm); err != nil {
		ln.Close()
		return nil, fmt.Errorf("nix daemon socket: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		ln.Close()
		return nil, fmt.Errorf("nix daemon socket: %w", err)
	}
	return &unixListener{UnixListener: ul, path: path}, nil
}

type unixListener struct {
	*net.UnixListener
	path string
}

func (l *unixListener) Close() error {
	err := l.UnixListener.Close()
	os.Remove(l.path)
	return err
}

// peer returns the credentials of a Unix socket's client, for the logs.
func peer(c net.Conn) (pid, uid int, ok bool) {
	uc, isUnix := c.(*net.UnixConn)
	if !isUnix {
		return 0, 0, false
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return 0, 0, false
	}
	var cred *unix.Ucred
	raw.Control(func(fd uintptr) {
		cred, err = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if err != nil || cred == nil {
		return 0, 0, false
	}
	return int(cred.Pid), int(cred.Uid), true
}
