// Command narfs mounts a Nix binary cache as a read-only /nix/store and
// answers questions about it without a mount (ls, cat, info).
package main

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/narfs/narfs/remote"
	"github.com/narfs/narfs/remote/backend"
	"github.com/narfs/narfs/remote/narinfo"
	"github.com/narfs/narfs/remote/stats"
)

// globalFlags are shared by every subcommand that opens a store.
type globalFlags struct {
	cacheDir    string
	cacheSize   int64
	listingMem  int64
	wholeMax    int64
	trustedKeys string
	requireSigs bool
	logLevel    string
	logFormat   string
	timeout     time.Duration
	prefetch    bool
	lookahead   bool
	// recordNarinfos, not a flag: register sets it (remote.Config).
	recordNarinfos bool
	noListings     bool

	// nixDaemonSocket is mount's --nix-daemon-socket (daemon.go).
	nixDaemonSocket string

	// onRequest, not a flag: mount sets it to feed its metrics.
	onRequest stats.Observer
	// progressDeadlines, not a flag: commands without readers set it
	// (remote.Config.ProgressDeadlines).
	progressDeadlines bool
}

func main() {
	var g globalFlags
	root := &cobra.Command{
		Use:   "narfs",
		Short: "Mount a Nix binary cache as a read-only /nix/store",
		Long: `narfs mounts a Nix binary cache (S3 or S3-compatible, HTTP(S), a local directory) as a
read-only /nix/store: paths resolve on lookup, NARs are fetched, verified like Nix does and
kept in a bounded local cache.

Every flag can also be given as an environment variable NARFS_<FLAG>, upper case with
underscores (--cache-dir: NARFS_CACHE_DIR); the command line wins.

Exit status: 0 success, 1 failure (a path failed, the cache is unreachable, ...),
2 bad flags or arguments.`,
		Version:       version(),
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return applyEnv(cmd)
		},
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.cacheDir, "cache-dir", remote.DefaultCacheDir(), "directory for verified NAR contents, trusted as verified: it must be owned by the user narfs runs as and not writable by group or others (narfs refuses it otherwise); made 0700")
	g.cacheSize = 10 << 30
	pf.Var((*byteSize)(&g.cacheSize), "cache-size", "extracted NARs to keep in --cache-dir, least recently used go first: bytes, or 100MB, 1.5GB (decimal), 512MiB, 10GiB (binary); a bare K, M, G, T is binary, as in Nix")
	g.listingMem = 256 << 20
	pf.Var((*byteSize)(&g.listingMem), "listing-memory", "memory for store path listings kept in RAM (a single unverified .ls may take a quarter of it)")
	g.wholeMax = remote.DefaultIndexedWholeMax
	pf.Var((*zeroableSize)(&g.wholeMax), "indexed-whole-max", "a path with a chunk index (narfs push) stored in at most this many bytes is fetched whole, in parallel, in the background, from its first read (reads wait only for their own chunks); larger ones only as reads need. 0: never")
	pf.StringVar(&g.trustedKeys, "trusted-public-keys", "", "space-separated `name:base64` keys (default: trusted-public-keys of $NIX_CONF_DIR/nix.conf or /etc/nix/nix.conf, else Nix's default cache.nixos.org-1)")
	pf.BoolVar(&g.requireSigs, "require-sigs", true, "hide paths without a signature by a trusted key (content-addressed paths excepted). Chunk indexes are used only when a trusted key signs them, whatever this says")
	pf.StringVar(&g.logLevel, "log-level", "info", "debug, info, warn or error")
	pf.StringVar(&g.logFormat, "log-format", "text", "text or json (one object per line, for log collectors)")
	pf.DurationVar(&g.timeout, "timeout", 30*time.Second, "longest a lookup or an open waits for an answer, retries included (a download slower than 64 KiB/s counts as stalled); push, index, verify and prefetch: longest any request to the cache waits for its first bytes, retries included, and then as long as they keep coming at 64 KiB/s")
	pf.BoolVar(&g.noListings, "verified-metadata-only", false, "ignore the cache's unsigned .ls listings: take metadata (stat, readdir, symlink targets) only from verified NARs and signed chunk indexes. Without it a .ls is used, within the signed NarSize, only on stock caches: never for a cache whose nix-cache-info declares chunk indexes, a path whose narinfo names one, or a path whose index verified here before")
	pf.BoolVar(&g.prefetch, "prefetch-references", false, "when a path's data is fetched, fetch its references' data too, in the background, 4 paths at a time (walks of whole closures overlap downloads)")
	pf.BoolVar(&g.lookahead, "lookahead-references", true, "when a path is resolved, look up its references' narinfos and listings (never NARs) in the background, 16 at a time, so walking a closure costs no round trip per path")
	root.AddCommand(mountCmd(&g), lsCmd(&g), catCmd(&g), infoCmd(&g), pushCmd(&g), indexCmd(&g), verifyCmd(&g), prefetchCmd(&g), registerCmd(&g), statsCmd(), installUnitCmd())
	markUsageErrors(root)
	err := root.Execute()
	if err != nil {
		fmt.Fprintf(os.Stderr, "narfs: %s\n", escapeLine(err.Error()))
	}
	os.Exit(exitStatus(err))
}

func (g *globalFlags) logger() (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(g.logLevel)); err != nil {
		return nil, usageError{fmt.Errorf("--log-level %q: want debug, info, warn or error", g.logLevel)}
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch g.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, usageError{fmt.Errorf("--log-format %q: want text or json", g.logFormat)}
}

// openStore turns the flags into the caches at storeURLs; with none, the
// substituters of nix.conf (Nix's default, cache.nixos.org, without one).
func (g *globalFlags) openStore(ctx context.Context, storeURLs []string, log *slog.Logger) (*remote.Core, error) {
	if len(storeURLs) == 0 {
		storeURLs = nixConfSubstituters()
		log.Info("no store URL given: using the substituters of nix.conf", "substituters", strings.Join(storeURLs, " "))
	}
	keyText := g.trustedKeys
	if keyText == "" {
		keyText = nixConfTrustedKeys()
	}
	keys, err := narinfo.ParsePublicKeys(keyText)
	if err != nil {
		return nil, fmt.Errorf("--trusted-public-keys: %w", err)
	}
	if g.requireSigs && len(keys) == 0 {
		log.Warn("no trusted public keys: only content-addressed paths will be visible (see --trusted-public-keys, --require-sigs=false)")
	}
	return remote.Open(ctx, storeURLs, remote.Config{
		TrustedKeys:   keys,
		RequireSigs:   g.requireSigs,
		CacheDir:      g.cacheDir,
		CacheSize:     g.cacheSize,
		ListingMemory: g.listingMem,
		Logger:        log,

		PrefetchReferences:   g.prefetch,
		NoReferenceLookahead: !g.lookahead,
		VerifiedMetadataOnly: g.noListings,
		RecordNarinfos:       g.recordNarinfos,
		Timeout:              g.timeout,
		ProgressDeadlines:    g.progressDeadlines,
		IndexedWholeMax:      cmp.Or(g.wholeMax, -1),
		OnRequest:            g.onRequest,
		Backend:              backend.Options{Logger: log},
	})
}

// backendOptions are those of the commands that talk to one cache
// themselves (push, index, verify): --timeout bounds each request,
// retries included, as upload.Open says, and each stalled read.
func (g *globalFlags) backendOptions(log *slog.Logger) backend.Options {
	return backend.Options{Logger: log, RequestTimeout: g.timeout, StallTimeout: g.timeout}
}

// target is a store path (and sub-path) named on the command line,
// resolved in an opened store. Close the store when done.
type target struct {
	store *remote.Core
	info  *remote.PathInfo
	sub   string
}

// resolveArg opens the caches at storeURLs and resolves a
// `STORE-PATH[/SUB]` argument; byHash also accepts a bare hash part
// (`narfs info HASH`).
func (g *globalFlags) resolveArg(ctx context.Context, storeURLs []string, arg string, byHash bool) (*target, error) {
	log, err := g.logger()
	if err != nil {
		return nil, err
	}
	store, err := g.openStore(ctx, storeURLs, log)
	if err != nil {
		return nil, err
	}
	base, sub := splitStorePath(store.StoreDir(), arg)
	var info *remote.PathInfo
	if byHash && !strings.Contains(base, "-") {
		info, err = store.ResolveHash(ctx, base)
	} else {
		info, err = store.Resolve(ctx, base)
	}
	if err != nil {
		store.Close()
		return nil, err
	}
	return &target{store: store, info: info, sub: sub}, nil
}

// splitURLs separates the leading store URLs of args (every argument
// with a scheme://) from the rest, which must number between min and max
// (max < 0: no limit).
func splitURLs(args []string, min, max int, what string) (urls, rest []string, err error) {
	i := 0
	for i < len(args) && strings.Contains(args[i], "://") {
		i++
	}
	urls, rest = args[:i], args[i:]
	for _, a := range rest {
		if strings.Contains(a, "://") {
			return nil, nil, usageError{fmt.Errorf("store URL %q after %s: give the store URLs first", a, what)}
		}
	}
	if len(rest) < min || max >= 0 && len(rest) > max {
		return nil, nil, usageError{fmt.Errorf("want [STORE-URL…] %s", what)}
	}
	return urls, rest, nil
}

// pathArgs is the Args of ls, cat and info: [STORE-URL…] STORE-PATH.
func pathArgs(_ *cobra.Command, args []string) error {
	_, _, err := splitURLs(args, 1, 1, "STORE-PATH")
	return err
}

// splitStorePath accepts `/nix/store/<base>[/sub]`, `<base>[/sub]` and
// returns the base name and the slash-separated sub-path.
func splitStorePath(storeDir, arg string) (base, sub string) {
	arg = strings.TrimPrefix(arg, storeDir+"/")
	arg = strings.TrimLeft(arg, "/")
	base, sub, _ = strings.Cut(arg, "/")
	return base, strings.Trim(sub, "/")
}
