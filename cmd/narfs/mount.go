package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/spf13/cobra"

	narfs "github.com/narfs/narfs/fs"
	"github.com/narfs/narfs/remote/metrics"
)

func mountCmd(g *globalFlags) *cobra.Command {
	var o narfs.Options
	var debugFuse bool
	var metricsListen string
	c := &cobra.Command{
		Use:   "mount [flags] [STORE-URL…] MOUNTPOINT",
		Short: "Mount binary caches as a read-only store directory (foreground)",
		Long: `Mount serves the caches at the STORE-URLs (s3://BUCKET?region=…&endpoint=…, http(s)://…,
file:///DIR — the URLs you give Nix as substituters) at MOUNTPOINT until SIGINT or SIGTERM.
With no STORE-URL it serves the substituters (and extra-substituters) of nix.conf.

Several caches are used as Nix uses its substituters: ordered by priority (lower first:
the cache's nix-cache-info Priority, or ?priority= in its URL), ties in the order given;
the first cache with a trusted narinfo for a path serves that path. A lookup asks all
caches at once. A cache that fails costs one --timeout and is then skipped for a minute.`,
		Example: `  # Amazon S3 (credentials from the AWS default chain or profile=)
  narfs mount --trusted-public-keys "$(cat cache.pub)" 's3://my-cache?region=eu-west-1' /mnt/store

  # an S3-compatible service (MinIO, Ceph, versitygw): path-style at endpoint=
  narfs mount 's3://nix?endpoint=minio.internal:9000&scheme=http&region=us-east-1' /mnt/store

  # cache.nixos.org (its key is Nix's default trusted key)
  narfs mount https://cache.nixos.org /mnt/store

  # a local cache directory, as written by nix copy --to file://… or narfs push
  narfs mount file:///srv/nix-cache /mnt/store

  # your own bucket first, cache.nixos.org for the rest (Nix's order: priority, then as given)
  narfs mount 's3://my-cache?region=eu-west-1&priority=10' https://cache.nixos.org /mnt/store

  # the substituters and trusted-public-keys of /etc/nix/nix.conf
  narfs mount /mnt/store

  # Prometheus metrics and /healthz on a local port (see narfs stats)
  narfs mount --metrics-listen 127.0.0.1:9150 https://cache.nixos.org /mnt/store

  # the same, configured through the environment (every flag has a NARFS_ variable)
  NARFS_CACHE_DIR=/var/cache/narfs NARFS_CACHE_SIZE=20GiB narfs mount file:///srv/nix-cache /mnt/store`,
		Args: func(_ *cobra.Command, args []string) error {
			_, _, err := splitURLs(args, 1, 1, "MOUNTPOINT")
			return err
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			urls, rest, _ := splitURLs(args, 1, 1, "MOUNTPOINT")
			log, err := g.logger()
			if err != nil {
				return err
			}
			o.Logger = log
			o.Debug = debugFuse
			return runMount(cmd.Context(), g, o, urls, rest[0], metricsListen)
		},
	}
	f := c.Flags()
	f.BoolVar(&o.AllowOther, "allow-other", false, "let users other than the mounting one access the mount")
	f.BoolVar(&o.Passthrough, "passthrough", true, "let the kernel read cached files directly (FUSE passthrough, Linux ≥ 6.9, root)")
	f.BoolVar(&o.NoOpen, "no-open", false, "no OPEN or RELEASE round trip per opened file (the kernel's no-open mode): walks of many small files run near native speed once cached, but large files are read through narfs (no passthrough), and errors of a cold path come with its first read, not its open")
	f.BoolVar(&debugFuse, "debug-fuse", false, "log every FUSE request")
	f.StringVar(&g.nixDaemonSocket, "nix-daemon-socket", "", "also serve Nix's daemon protocol, read-only, for the mount's paths on a Unix socket at `PATH` (mode 0600, 0666 with --allow-other), for Nix's --store unix://PATH and as the lower store of a local-overlay store (README: Builds on narfs)")
	f.StringVar(&metricsListen, "metrics-listen", "", "serve Prometheus metrics at http://ADDR/metrics and /healthz (e.g. 127.0.0.1:9150; off when empty)")
	return c
}

func runMount(ctx context.Context, g *globalFlags, o narfs.Options, storeURLs []string, mountpoint, metricsListen string) error {
	if err := checkMountpoint(mountpoint, o.Logger); err != nil {
		return err
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return fmt.Errorf("/dev/fuse is missing: load the fuse module or pass --device /dev/fuse to the container")
	}
	if os.Geteuid() != 0 {
		if _, err := exec.LookPath("fusermount3"); err != nil {
			if _, err := exec.LookPath("fusermount"); err != nil {
				return fmt.Errorf("not root and no fusermount3 in PATH: install fuse3 or run as root")
			}
		}
	}
	// Catch signals before the mount exists: one arriving between the
	// mount and the handler would kill the process and leave a dead mount.
	// Until the mount is up, a signal cancels the setup instead.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	var (
		mu     sync.Mutex
		server *narfs.Server // set once mounted
	)
	go func() {
		for sig := range sigs {
			mu.Lock()
			srv := server
			mu.Unlock()
			if srv == nil {
				cancel()
				continue
			}
			// systemd: the service is going down now, not crashing.
			if err := sdNotify("STOPPING=1"); err != nil {
				o.Logger.Warn("notifying systemd", "err", err)
			}
			o.Logger.Info("unmounting", "signal", sig.String())
			// A busy mount stays up rather than leaving a dead one behind;
			// the user closes what holds it and signals again.
			if err := srv.Unmount(); err != nil {
				o.Logger.Error("unmount failed; still serving (close open files and signal again)", "err", err)
			}
		}
	}()

	var ready atomic.Bool // the mount answers
	var m *metrics.Metrics
	if metricsListen != "" {
		var stop func()
		var err error
		if m, stop, err = serveMetrics(metricsListen, &ready, o.Logger); err != nil {
			return err
		}
		defer stop()
		o.Metrics = m
		g.onRequest = m.ObserveRequest
	}
	store, err := g.openStore(ctx, storeURLs, o.Logger)
	if err != nil {
		return err
	}
	defer store.Close()
	if m != nil {
		m.Watch(store)
	}
	if g.nixDaemonSocket != "" {
		// Stopped (and its socket removed) when runMount returns, after
		// the unmount.
		stop, err := startNixDaemon(ctx, g, g.nixDaemonSocket, o.AllowOther, store, o.Logger)
		if err != nil {
			return err
		}
		defer stop()
	}
	srv, err := narfs.Mount(mountpoint, store, o)
	if err != nil {
		return err
	}
	if err := srv.WaitMount(); err != nil {
		srv.Unmount()
		return fmt.Errorf("mount %s: %w", mountpoint, err)
	}
	mu.Lock()
	server = srv
	mu.Unlock()
	// The kernel has the mount; ask it for the root once, as any client
	// would, before telling anyone it is up. (The server's goroutines
	// answer: this is not the serving path.)
	if ctx.Err() == nil {
		if err := checkAnswers(mountpoint); err != nil {
			srv.Unmount()
			return err
		}
		ready.Store(true)
		if err := sdNotify("READY=1"); err != nil {
			o.Logger.Warn("notifying systemd", "err", err)
		}
	}
	if ctx.Err() != nil {
		// Interrupted while mounting.
		if err := srv.Unmount(); err != nil {
			o.Logger.Error("unmount failed; still serving (close open files and signal again)", "err", err)
		}
	} else {
		o.Logger.Info("mounted", "store", store.URL(), "mountpoint", mountpoint, "cache-dir", g.cacheDir)
	}
	srv.Wait()
	ready.Store(false)
	s := store.Stats()
	o.Logger.Info("unmounted", "nar_fetches", s.Fetches, "upstream_bytes", s.UpstreamBytes, "narinfo_gets", s.NarinfoGets, "nar_gets", s.NarGets)
	return nil
}

func checkMountpoint(mp string, log *slog.Logger) error {
	if err := detachDeadMount(mp, log); err != nil {
		return err
	}
	fi, err := os.Stat(mp)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("mountpoint %s does not exist", mp)
	}
	if err != nil {
		// ENOTCONN: a dead FUSE mount from a crashed daemon.
		if errors.Is(err, syscall.ENOTCONN) {
			return fmt.Errorf("mountpoint %s is a dead FUSE mount: run `fusermount3 -u %s` first", mp, mp)
		}
		return fmt.Errorf("mountpoint %s: %w", mp, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("mountpoint %s is not a directory", mp)
	}
	if mounted, _ := isMountpoint(mp); mounted {
		return fmt.Errorf("mountpoint %s is busy: something is already mounted there", mp)
	}
	return nil
}

// detachDeadMount lazily unmounts what a killed narfs left at mp: a FUSE
// mount nobody serves, where every access fails with ENOTCONN (stat of
// its root may still answer from the kernel's attribute cache; statfs
// always asks the daemon). Dead mounts of other file systems are only
// reported: they are not ours to remove.
func detachDeadMount(mp string, log *slog.Logger) error {
	abs, err := filepath.Abs(mp)
	if err != nil {
		return nil
	}
	fstype, ok := mountType(abs)
	if !ok || !strings.HasPrefix(fstype, "fuse") {
		return nil
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(abs, &st); !errors.Is(err, syscall.ENOTCONN) {
		return nil
	}
	if fstype != "fuse.narfs" {
		return fmt.Errorf("mountpoint %s is a dead FUSE mount (%s): run `fusermount3 -u %s` first", mp, fstype, mp)
	}
	if err := syscall.Unmount(abs, syscall.MNT_DETACH); err != nil {
		return fmt.Errorf("mountpoint %s is a dead narfs mount and detaching it failed (%v): run `fusermount3 -u %s`", mp, err, mp)
	}
	log.Warn("detached a dead narfs mount left by a daemon that was killed", "mountpoint", mp)
	return nil
}

// mountType returns the file system type of the mount whose mount point is
// exactly dir (the last one, if stacked), from /proc/self/mountinfo.
func mountType(dir string) (string, bool) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", false
	}
	var fstype string
	found := false
	for _, line := range strings.Split(string(data), "\n") {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS
		f := strings.Fields(line)
		if len(f) < 5 || unescapeMountinfo(f[4]) != dir {
			continue
		}
		for i, v := range f {
			if v == "-" && i+1 < len(f) {
				fstype, found = f[i+1], true
				break
			}
		}
	}
	return fstype, found
}

// unescapeMountinfo undoes the kernel's octal escapes (\040 for a space).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, "\\") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// isMountpoint compares device numbers with the parent's.
func isMountpoint(mp string) (bool, error) {
	var st, parent syscall.Stat_t
	if err := syscall.Stat(mp, &st); err != nil {
		return false, err
	}
	if err := syscall.Stat(mp+"/..", &parent); err != nil {
		return false, err
	}
	return st.Dev != parent.Dev || st.Ino == parent.Ino, nil
}
