package main

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"

	"github.com/narfs/narfs/remote"
	"github.com/narfs/narfs/remote/narinfo"
	"github.com/narfs/narfs/remote/nixdaemon"
)

// trustedKeys are the keys openStore verifies with: --trusted-public-keys,
// else nix.conf's, else Nix's default.
func (g *globalFlags) trustedKeyList() ([]narinfo.PublicKey, error) {
	text := g.trustedKeys
	if text == "" {
		text = nixConfTrustedKeys()
	}
	keys, err := narinfo.ParsePublicKeys(text)
	if err != nil {
		return nil, fmt.Errorf("--trusted-public-keys: %w", err)
	}
	return keys, nil
}

// startNixDaemon serves Nix's worker protocol, read-only, for the paths
// store serves, on a Unix socket at path: mode 0600 (narfs's user only),
// 0666 with --allow-other, as the mount's own permissions. The returned
// stop closes the listener and every connection, waits for them and
// removes the socket.
func startNixDaemon(ctx context.Context, g *globalFlags, path string, allowOther bool, store *remote.Core, log *slog.Logger) (stop func(), err error) {
	keys, err := g.trustedKeyList()
	if err != nil {
		return nil, err
	}
	perm := fs.FileMode(0o600)
	if allowOther {
		perm = 0o666
	}
	ln, err := nixdaemon.ListenUnix(path, perm)
	if err != nil {
		return nil, fmt.Errorf("--nix-daemon-socket: %w", err)
	}
	srv := &nixdaemon.Server{Store: nixdaemon.NewCore(store, keys), Log: log}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Serve closes ln (which removes the socket) however it ends.
		if err := srv.Serve(ctx, ln); err != nil {
			log.Error("nix daemon socket stopped serving", "socket", path, "err", err)
		}
	}()
	log.Info("serving Nix's daemon protocol (read-only)", "socket", path, "mode", fmt.Sprintf("%#o", perm), "store", "unix://"+path)
	return func() {
		cancel()
		<-done
	}, nil
}
