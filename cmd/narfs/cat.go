package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/remote"
)

func catCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "cat [STORE-URL…] STORE-PATH[/SUB/PATH]",
		Short: "Print a file of a store path (fetches and verifies its NAR once)",
		Args:  pathArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			urls, rest, _ := splitURLs(args, 1, 1, "STORE-PATH")
			tg, err := g.resolveArg(ctx, urls, rest[0], false)
			if err != nil {
				return err
			}
			defer tg.store.Close()
			n, err := tg.store.Lookup(ctx, tg.info, tg.sub)
			if err != nil {
				return err
			}
			if n.Type != nar.TypeRegular {
				return fmt.Errorf("%s: is a %s, not a regular file", rest[0], n.Type)
			}
			var r io.Reader
			if cf, err := tg.store.OpenChunked(ctx, tg.info, tg.sub); err == nil {
				// Indexed: only this file's chunks are fetched.
				defer cf.Close()
				r = cf.Reader(ctx)
			} else if !errors.Is(err, remote.ErrNotIndexed) {
				return err
			} else {
				f, err := tg.store.OpenFile(ctx, tg.info, tg.sub)
				if err != nil {
					return err
				}
				defer f.Close()
				r = f.Reader()
			}
			_, err = io.Copy(os.Stdout, r)
			return err
		},
	}
}
