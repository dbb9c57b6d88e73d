package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/narfs/narfs/remote/narinfo"
	"github.com/narfs/narfs/remote/storepath"
	"github.com/narfs/narfs/remote/upload"
)

func indexCmd(g *globalFlags) *cobra.Command {
	var (
		keyFile string
		all     bool
		o       upload.IndexOptions
	)
	c := &cobra.Command{
		Use:   "index --secret-key FILE [--trusted-public-keys KEYS] [--prune] STORE-URL PATH…|--all",
		Short: "Give the paths of an existing binary cache a signed chunk index, in place",
		Long: `Index upgrades a binary cache so that narfs can fetch single files: per path it downloads
the NAR once, checks it against NarHash/NarSize, and writes a signed chunk index (at
index/HASH.nidx, its signature inside) and a .ls. An uncompressed NAR is indexed as it is;
any other is re-encoded as chunked zstd into a new object and the narinfo is rewritten to
point at it, every other line (Sig included) kept. A path indexed by an older narfs (an
index named by NarfsIndex lines in its narinfo) gets its index moved into index/HASH.nidx
and a narinfo without those lines, which strict readers (go-nix, nar-serve) refuse.
Old objects stay unless --prune. Paths with a valid index by this key are skipped, so a
rerun finishes what an interrupted one left.

The index is signed with --secret-key, so only paths whose narinfo is signed by that key
or by one of --trusted-public-keys (default: nix.conf's) are indexed; any other path
fails ("not indexing") and nothing is written for it: an unsigned narinfo is anyone's
word, and indexing it would sign that word (a content address vouches for NarHash, not
for NarSize, which sizes the temporary files).`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 || (len(args) == 1) != all {
				return fmt.Errorf("want STORE-URL and PATHs, or STORE-URL --all")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			key, err := readSecretKey(keyFile)
			if err != nil {
				return err
			}
			o.Key = key
			keyText := g.trustedKeys
			if keyText == "" {
				keyText = nixConfTrustedKeys()
			}
			if o.Trusted, err = narinfo.ParsePublicKeys(keyText); err != nil {
				return usageError{fmt.Errorf("--trusted-public-keys: %w", err)}
			}
			var hashes []string
			for _, a := range args[1:] {
				h, err := upload.HashPart(storepath.DefaultStoreDir, a)
				if err != nil {
					return err
				}
				hashes = append(hashes, h)
			}
			log, err := g.logger()
			if err != nil {
				return err
			}
			cache, err := upload.Open(ctx, args[0], g.backendOptions(log))
			if err != nil {
				return err
			}
			defer cache.Close()
			if all {
				if hashes, err = upload.AllHashes(ctx, cache.B); err != nil {
					return err
				}
			}
			pr := newProgress(int64(len(hashes)), "indexing", false)
			failed := 0
			err = cache.IndexAll(ctx, hashes, o, func(r upload.IndexResult) {
				switch {
				case r.Err != nil:
					failed++
					pr.linef("FAIL %s: %v", r.Path, r.Err)
				case r.Skipped:
					pr.linef("skipped %s (already indexed)", r.Path)
				case r.OldURL != "":
					pr.linef("indexed %s (re-encoded %s as %s)", r.Path, r.OldURL, r.NewURL)
				default:
					pr.linef("indexed %s", r.Path)
				}
				pr.add(1)
			})
			pr.finish()
			if err != nil {
				return err
			}
			if failed > 0 {
				return fmt.Errorf("%d of %d paths failed", failed, len(hashes))
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&keyFile, "secret-key", "", "file with the `name:base64` secret key that signs the indexes (required)")
	f.BoolVar(&all, "all", false, "index every narinfo in the cache (not on http)")
	f.BoolVar(&o.Prune, "prune", false, "delete replaced objects once no narinfo names them")
	f.IntVar(&o.Jobs, "jobs", 4, "paths processed at once")
	c.MarkFlagRequired("secret-key")
	return c
}
