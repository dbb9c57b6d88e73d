package nixdaemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"sync"
	"time"
)

// Store is what the server needs from the core: validity and metadata of
// the paths it serves, and their verified NARs. Its methods are called
// from many connections at once.
type Store interface {
	// StoreDir is the store directory, e.g. /nix/store.
	StoreDir() string
	// QueryPathInfo returns a path's metadata; ok is false when the path
	// is not valid (not served). storePath is absolute and well formed.
	QueryPathInfo(ctx context.Context, storePath string) (info *PathInfo, ok bool, err error)
	// QueryPathFromHashPart returns the absolute store path with the hash
	// part, ok false when none is served.
	QueryPathFromHashPart(ctx context.Context, hashPart string) (storePath string, ok bool, err error)
	// NarFromPath writes the path's verified NAR to w. The server starts
	// its reply when the first byte is written: an error before that
	// reaches the client as a Nix error, one after it can only close the
	// connection. So an implementation does everything that may fail
	// (resolving, fetching, verifying) before its first write.
	NarFromPath(ctx context.Context, storePath string, w io.Writer) error
}

// Validator is a Store that tells a path's validity more cheaply than
// its metadata; the server uses it, when the Store has it, for the
// operations that need validity only (IsValidPath, QueryValidPaths,
// QueryMissing, BuildPaths, EnsurePath). Its answer must be
// QueryPathInfo's ok and err.
type Validator interface {
	IsValidPath(ctx context.Context, storePath string) (ok bool, err error)
}

// PathInfo is a valid path's metadata, as QueryPathInfo sends it. Paths
// are absolute.
type PathInfo struct {
	Path    string
	Deriver string // "" when unknown
	// NarHash is the SHA-256 of the NAR (32 bytes); the protocol sends it
	// in base 16.
	NarHash          []byte
	NarSize          uint64
	References       []string
	Sigs             []string // "<key name>:<base64>"
	CA               string   // content address, "" when none
	RegistrationTime time.Time
	Ultimate         bool
}

// Server serves Nix's worker protocol, read-only, over a Store. The zero
// value of each tunable picks the default documented on it.
type Server struct {
	Store Store
	Log   *slog.Logger // nil: slog.Default()

	// IdleTimeout closes a connection that sends no request for this
	// long. 0 (the default) never does, as nix-daemon: Nix clients keep
	// connections in a pool and do not reconnect when the daemon hangs
	// up between requests.
	IdleTimeout time.Duration
	// RequestTimeout bounds each read of a request once its operation
	// number has arrived, the handshake, and each write of a reply
	// (so a client that stops reading a NAR is dropped). Default 2 min.
	RequestTimeout time.Duration
	// MaxConns bounds the connections served at once; more are closed as
	// soon as they are accepted. Default 128.
	MaxConns int
	// Jobs bounds the lookups of one QueryValidPaths run at once. Default 16.
	Jobs int
	// Version is the daemon version sent in the handshake. Default "narfs".
	Version string
}

const (
	defaultRequestTimeout = 2 * time.Minute
	defaultMaxConns       = 128
	defaultJobs           = 16
)

func (s *Server) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.Default()
}

func (s *Server) requestTimeout() time.Duration {
	if s.RequestTimeout > 0 {
		return s.RequestTimeout
	}
	return defaultRequestTimeout
}

// Serve accepts connections on ln and serves each on its own goroutine
// until ctx is done or accepting fails. Either way it then closes ln and
// every connection and waits for their goroutines; it returns nil when
// ctx ended it, else the listener's error.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel() // closes ln and every connection (the AfterFuncs)
		// The AfterFunc closing ln runs in its own goroutine: close it
		// here too (closing twice is harmless), so that ln is closed, and
		// a ListenUnix socket removed, when Serve returns.
		ln.Close()
		wg.Wait()
	}()
	context.AfterFunc(ctx, func() { ln.Close() })
	maxConns := s.MaxConns
	if maxConns <= 0 {
		maxConns = defaultMaxConns
	}
	slots := make(chan struct{}, maxConns)
	var tempDelay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				tempDelay = min(max(2*tempDelay, 5*time.Millisecond), time.Second)
				time.Sleep(tempDelay)
				continue
			}
			return fmt.Errorf("nix daemon: accept: %w", err)
		}
		tempDelay = 0
		select {
		case slots <- struct{}{}:
		default:
			s.log().Warn("nix daemon: too many connections; closing a new one", "max", maxConns)
			c.Close()
			continue
		}
		wg.Go(func() {
			defer func() { <-slots }()
			s.ServeConn(ctx, c)
		})
	}
}

// ServeConn serves one connection until the client hangs up, breaks the
// protocol, or ctx is done, and closes it. A panic is logged and closes
// only this connection.
func (s *Server) ServeConn(ctx context.Context, c net.Conn) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	defer c.Close()
	log := s.log().With("conn", fmt.Sprintf("%p", c))
	if pid, uid, ok := peer(c); ok {
		log = log.With("pid", pid, "uid", uid)
	}
	defer func() {
		if r := recover(); r != nil {
			log.Error("nix daemon: panic serving a connection; closing it", "panic", r, "stack", string(debug.Stack()))
		}
	}()
	cn := &conn{srv: s, c: c, d: newDecoder(c), e: newEncoder(c), log: log}
	if err := cn.serve(ctx); err != nil && ctx.Err() == nil {
		log.Info("nix daemon: connection closed", "err", err)
	}
}

// conn is one client connection; it is used by one goroutine.
type conn struct {
	srv     *Server
	c       net.Conn
	d       *decoder
	e       *encoder
	log     *slog.Logger
	version uint64 // negotiated protocol version
}

func (c *conn) deadline(d time.Duration) {
	if d <= 0 {
		c.c.SetReadDeadline(time.Time{})
		return
	}
	c.c.SetReadDeadline(time.Now().Add(d))
}

// flush sends what the encoder holds, within RequestTimeout.
func (c *conn) flush() error {
	c.c.SetWriteDeadline(time.Now().Add(c.srv.requestTimeout()))
	return c.e.flush()
}

func (c *conn) serve(ctx context.Context) error {
	if err := c.handshake(); err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	for {
		c.deadline(c.srv.IdleTimeout)
		v, err := c.d.u64()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		c.deadline(c.srv.requestTimeout())
		c.d.resetBudget()
		op := Op(v)
		start := time.Now()
		if err := c.perform(ctx, op); err != nil {
			return fmt.Errorf("%v: %w", op, err)
		}
		c.log.Debug("daemon operation", "op", op.String(), "took", time.Since(start))
	}
}

// handshake exchanges greetings and versions (see doc.go, Handshake).
func (c *conn) handshake() error {
	c.deadline(c.srv.requestTimeout())
	magic, err := c.d.u64()
	if err != nil {
		return err
	}
	if magic != workerMagic1 {
		return fmt.Errorf("%w: greeting %#x", ErrProtocol, magic)
	}
	c.e.u64(workerMagic2)
	c.e.u64(protocolVersion)
	if err := c.flush(); err != nil {
		return err
	}
	client, err := c.d.u64()
	if err != nil {
		return noEOF(err)
	}
	if major(client) != major(protocolVersion) || client < minClientVersion {
		return fmt.Errorf("%w: client protocol %d.%d unsupported (need 1.%d or newer)",
			ErrProtocol, client>>8, minor(client), minor(minClientVersion))
	}
	c.version = min(client, protocolVersion)
	if minor(c.version) >= 38 {
		// Features: the client's (ignored: narfs implements none), then
		// ours, none.
		if _, err := c.d.strs(MaxString); err != nil {
			return noEOF(err)
		}
		c.e.strs(nil)
		if err := c.flush(); err != nil {
			return err
		}
	}
	if minor(c.version) >= 14 {
		affinity, err := c.d.u64() // obsolete CPU affinity: a flag, then the CPU
		if err != nil {
			return noEOF(err)
		}
		if affinity != 0 {
			if _, err := c.d.u64(); err != nil {
				return noEOF(err)
			}
		}
	}
	if minor(c.version) >= 11 {
		if _, err := c.d.u64(); err != nil { // obsolete reserveSpace
			return noEOF(err)
		}
	}
	if minor(c.version) >= 33 {
		v := c.srv.Version
		if v == "" {
			v = "narfs"
		}
		c.e.str(v)
	}
	if minor(c.version) >= 35 {
		// Whether the daemon trusts the client: 2, not trusted. narfs
		// applies none of a client's settings and lets it write nothing.
		c.e.u64(2)
	}
	c.e.u64(stderrLast)
	c.log.Debug("nix daemon: client connected", "client", fmt.Sprintf("1.%d", minor(client)), "protocol", fmt.Sprintf("1.%d", minor(c.version)))
	return c.flush()
}
