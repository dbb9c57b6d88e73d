package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/narfs/narfs/nar"
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
			// Indexed or stock is the core's choice: an indexed path fetches
			// only this file's chunks, a stock one its verified NAR once.
			f, err := tg.store.Open(ctx, tg.info, tg.sub)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.Copy(os.Stdout, f.Reader(ctx))
			return err
		},
	}
}
