package main

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"

	"github.com/spf13/cobra"

	"github.com/narfs/narfs/remote/backend"
	"github.com/narfs/narfs/remote/narinfo"
	"github.com/narfs/narfs/remote/storepath"
	"github.com/narfs/narfs/remote/upload"
)

func verifyCmd(g *globalFlags) *cobra.Command {
	var (
		all  bool
		jobs int
	)
	c := &cobra.Command{
		Use:   "verify [--trusted-public-keys KEYS] STORE-URL PATH…|--all",
		Short: "Check every claim a binary cache makes about paths: signatures, NAR, listing, chunk index",
		Long: `Verify downloads each path's narinfo and NAR and checks: the narinfo parses and is signed by
a trusted key (or is content-addressed); the NAR matches FileHash/FileSize, NarHash/NarSize;
the .ls, if any, lists that NAR; the chunk index (index/HASH.nidx), if any, is signed by a
trusted key, matches the narinfo, lists the NAR and has every chunk decode to its bytes; a
narinfo that still names its index in NarfsIndex lines (an older narfs; narfs index moves
them out) is reported, as strict readers refuse it. It prints "ok PATH" or
"FAIL PATH: reasons" per path and exits 1 if any path failed, 2 on a usage error.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 || (len(args) == 1) != all {
				usageExit(cmd, fmt.Errorf("want STORE-URL and PATHs, or STORE-URL --all"))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			keyText := g.trustedKeys
			if keyText == "" {
				keyText = nixConfTrustedKeys()
			}
			keys, err := narinfo.ParsePublicKeys(keyText)
			if err != nil {
				usageExit(cmd, fmt.Errorf("--trusted-public-keys: %w", err))
			}
			var hashes []string
			for _, a := range args[1:] {
				h, err := upload.HashPart(storepath.DefaultStoreDir, a)
				if err != nil {
					usageExit(cmd, err)
				}
				hashes = append(hashes, h)
			}
			log, err := g.logger()
			if err != nil {
				usageExit(cmd, err)
			}
			return runVerify(cmd.Context(), args[0], hashes, all, keys, jobs, g.backendOptions(log))
		},
	}
	c.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		usageExit(cmd, err)
		return err
	})
	c.Flags().BoolVar(&all, "all", false, "verify every narinfo in the cache (not on http)")
	c.Flags().IntVar(&jobs, "jobs", 4, "paths verified at once")
	return c
}

// usageExit ends the process with status 2, as verify's usage promises.
func usageExit(cmd *cobra.Command, err error) {
	fmt.Fprintf(os.Stderr, "narfs: %s\nUsage: narfs %s\n", escapeLine(err.Error()), cmd.Use)
	os.Exit(2)
}

func runVerify(ctx context.Context, storeURL string, hashes []string, all bool, keys []narinfo.PublicKey, jobs int, opts backend.Options) error {
	log := opts.Logger
	cache, err := upload.OpenRead(ctx, storeURL, opts)
	if err != nil {
		return err
	}
	defer cache.Close()
	if all {
		if hashes, err = upload.AllHashes(ctx, cache.B); err != nil {
			return err
		}
	}
	if len(keys) == 0 {
		log.Warn("no trusted public keys: only content-addressed paths can pass")
	}
	work := make(chan string)
	var (
		mu     sync.Mutex
		failed int
		fatal  error
	)
	var wg sync.WaitGroup
	for range max(jobs, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for h := range work {
				r, err := cache.Verify(ctx, h, upload.VerifyOptions{Keys: keys})
				mu.Lock()
				switch {
				case err != nil:
					fatal = err
				case len(r.Reasons) > 0:
					failed++
					fmt.Println(escapeLine(fmt.Sprintf("FAIL %s: %s", r.Path, strings.Join(r.Reasons, "; "))))
				default:
					fmt.Println(escapeLine("ok " + r.Path))
				}
				mu.Unlock()
			}
		}()
	}
	sort.Strings(hashes)
	for _, h := range hashes {
		work <- h
	}
	close(work)
	wg.Wait()
	if fatal != nil {
		return fatal
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d paths failed verification", failed, len(hashes))
	}
	return nil
}
