package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/narfs/narfs/remote/narinfo"
	"github.com/narfs/narfs/remote/upload"
)

func pushCmd(g *globalFlags) *cobra.Command {
	var (
		keyFile   string
		o         upload.PushOptions
		noClosure bool
	)
	c := &cobra.Command{
		Use:   "push --secret-key FILE [flags] STORE-URL PATH…",
		Short: "Upload local store paths (and their closure) to a binary cache, with a chunk index",
		Long: `Push uploads PATHs from the local Nix store, with everything they reference unless
--no-closure, to STORE-URL (file:///DIR, s3://BUCKET?…, or http(s) accepting PUT). Each path
gets a chunked NAR object, a signed chunk index (index/HASH.nidx), a .ls listing and, last,
a narinfo signed by the secret key (nix-store --generate-binary-cache-key), holding only the
keys Nix writes. A path is skipped when the cache has a narinfo for it that parses, matches
the local path (NarHash, NarSize) and is signed by that key or one of --trusted-public-keys,
with its object present; any other narinfo at its name (junk, another path's, unsigned) is
replaced, and the output says so. Nix (and strict readers such as go-nix and nar-serve) read
the result like any binary cache.`,
		Args: cobra.MinimumNArgs(2),
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
			log, err := g.logger()
			if err != nil {
				return err
			}
			paths, err := upload.QueryPathInfo(ctx, args[1:], !noClosure)
			if err != nil {
				return err
			}
			cache, err := upload.Open(ctx, args[0], g.backendOptions(log))
			if err != nil {
				return err
			}
			defer cache.Close()
			var total int64
			for _, p := range paths {
				total += p.NarSize
			}
			pr := newProgress(total, "pushing", true)
			o.Progress = pr.add
			failed := 0
			err = cache.PushAll(ctx, paths, o, func(r upload.Result) {
				switch {
				case r.Err != nil:
					failed++
					pr.linef("FAIL %s: %v", r.Path, r.Err)
				case r.Skipped:
					pr.linef("skipped %s (already in the cache)", r.Path)
				case r.Replaced != "":
					pr.linef("pushed %s (replaced the narinfo there: %s)", r.Path, r.Replaced)
				default:
					pr.linef("pushed %s", r.Path)
				}
			})
			pr.finish()
			if err != nil {
				return err
			}
			if failed > 0 {
				return fmt.Errorf("%d of %d paths failed", failed, len(paths))
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&keyFile, "secret-key", "", "file with the `name:base64` secret key that signs the narinfos and indexes (required)")
	f.StringVar(&o.Compression, "compression", "zstd", "NAR objects as zstd frames, or none")
	f.BoolVar(&noClosure, "no-closure", false, "push only the named paths, not what they reference")
	f.IntVar(&o.Jobs, "jobs", 4, "paths processed at once")
	c.MarkFlagRequired("secret-key")
	return c
}

// maxSecretKeyFile bounds what is read of a --secret-key file: a Nix
// secret key file is a name and 88 characters of base64.
const maxSecretKeyFile = 4 << 10

// readSecretKey reads and parses a secret key file, reading at most
// maxSecretKeyFile bytes (--secret-key /dev/zero ends at once) and never
// putting any of its contents into an error.
func readSecretKey(file string) (narinfo.SecretKey, error) {
	if file == "" {
		return narinfo.SecretKey{}, fmt.Errorf("--secret-key is required")
	}
	f, err := os.Open(file)
	if err != nil {
		return narinfo.SecretKey{}, fmt.Errorf("--secret-key: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretKeyFile+1))
	if err != nil {
		return narinfo.SecretKey{}, fmt.Errorf("--secret-key %s: %w", file, err)
	}
	if len(b) > maxSecretKeyFile {
		return narinfo.SecretKey{}, fmt.Errorf("--secret-key %s: more than %d bytes: not a Nix secret key file (nix-store --generate-binary-cache-key)", file, maxSecretKeyFile)
	}
	k, err := narinfo.ParseSecretKey(strings.TrimSpace(string(b)))
	if err != nil {
		return narinfo.SecretKey{}, fmt.Errorf("--secret-key %s: %w (nix-store --generate-binary-cache-key writes one)", file, err)
	}
	return k, nil
}
