package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/narfs/narfs/remote/metrics"
)

// serveMetrics listens on addr (before the mount, so a taken port fails
// the start) and serves /metrics and /healthz, which answers 200 while
// ready holds, and Go's profiles under /debug/pprof/. stop shuts the
// server down.
func serveMetrics(addr string, ready *atomic.Bool, log *slog.Logger) (*metrics.Metrics, func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("--metrics-listen: %w", err)
	}
	m := metrics.New()
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler())
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			http.Error(w, "not mounted", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	// Go's profiles, for finding where a slow walk spends its time; the
	// listener is one the user chose to open, like the metrics.
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server failed", "err", err)
		}
	}()
	log.Info("serving metrics", "addr", ln.Addr().String())
	return m, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}, nil
}

// checkAnswers stats the mountpoint, which the kernel now sends to the
// new mount: it succeeds once the mount answers.
func checkAnswers(mountpoint string) error {
	var st syscall.Stat_t
	if err := syscall.Stat(mountpoint, &st); err != nil {
		return fmt.Errorf("mount %s does not answer: %w", mountpoint, err)
	}
	if mounted, err := isMountpoint(mountpoint); err != nil || !mounted {
		return fmt.Errorf("mount %s: not mounted after mounting (%v)", mountpoint, err)
	}
	return nil
}

// sdNotify sends state to systemd's $NOTIFY_SOCKET (sd_notify(3)), if
// set; a few lines rather than a dependency.
func sdNotify(state string) error {
	name := os.Getenv("NOTIFY_SOCKET")
	if name == "" {
		return nil
	}
	if name[0] == '@' { // abstract namespace
		name = "\x00" + name[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Write([]byte(state))
	return err
}
