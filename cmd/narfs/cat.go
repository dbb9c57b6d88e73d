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
		Use:   "cat STORE-URL STORE-PATH[/SUB/PATH]",
		Short: "Print a file of a store path (fetches and verifies its NAR once)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			log, err := g.logger()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			store, err := g.openStore(ctx, args[0], log)
			if err != nil {
				return err
			}
			defer store.Close()
			base, sub := splitStorePath(store.StoreDir(), args[1])
			info, err := store.Resolve(ctx, base)
			if err != nil {
				return err
			}
			n, err := store.Lookup(ctx, info, sub)
			if err != nil {
				return err
			}
			if n.Type != nar.TypeRegular {
				return fmt.Errorf("%s: is a %s, not a regular file", args[1], n.Type)
			}
			f, err := store.OpenFile(ctx, info, sub)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.Copy(os.Stdout, f)
			return err
		},
	}
}
