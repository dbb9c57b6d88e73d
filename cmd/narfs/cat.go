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
			ctx := cmd.Context()
			tg, err := g.resolveArg(ctx, args[0], args[1], false)
			if err != nil {
				return err
			}
			defer tg.store.Close()
			n, err := tg.store.Lookup(ctx, tg.info, tg.sub)
			if err != nil {
				return err
			}
			if n.Type != nar.TypeRegular {
				return fmt.Errorf("%s: is a %s, not a regular file", args[1], n.Type)
			}
			f, err := tg.store.OpenFile(ctx, tg.info, tg.sub)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.Copy(os.Stdout, f)
			return err
		},
	}
}
