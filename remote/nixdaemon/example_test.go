package nixdaemon_test

import (
	"context"
	"log"
	"os/signal"
	"syscall"

	"github.com/narfs/narfs/remote"
	"github.com/narfs/narfs/remote/narinfo"
	"github.com/narfs/narfs/remote/nixdaemon"
)

// A read-only Nix daemon over a binary cache: what
// `narfs mount --nix-daemon-socket` wires up beside the mount. Clients
// then use `--store unix:///run/narfs/daemon.sock`.
func ExampleServer() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	keys, err := narinfo.ParsePublicKeys("cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=")
	if err != nil {
		log.Fatal(err)
	}
	core, err := remote.Open(ctx, []string{"https://cache.nixos.org"},
		remote.Config{TrustedKeys: keys, RequireSigs: true})
	if err != nil {
		log.Fatal(err)
	}
	defer core.Close()
	// 0600: only narfs's own user (0666 with --allow-other).
	ln, err := nixdaemon.ListenUnix("/run/narfs/daemon.sock", 0o600)
	if err != nil {
		log.Fatal(err)
	}
	srv := &nixdaemon.Server{Store: nixdaemon.NewCore(core, keys)}
	if err := srv.Serve(ctx, ln); err != nil {
		log.Fatal(err)
	}
}
