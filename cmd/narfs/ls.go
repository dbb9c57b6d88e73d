package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path"
	"sort"

	"github.com/spf13/cobra"

	"github.com/narfs/narfs/nar"
)

func lsCmd(g *globalFlags) *cobra.Command {
	var long, recursive bool
	c := &cobra.Command{
		Use:   "ls [-l] [-R] [STORE-URL…] STORE-PATH[/SUB/PATH]",
		Short: "List a store path in the cache (from its .ls listing when there is one: no NAR download)",
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
			w := bufio.NewWriter(os.Stdout)
			defer w.Flush()
			name := path.Join(tg.info.Abs(tg.store.StoreDir()), tg.sub)
			printListing(w, name, n, long, recursive)
			return nil
		},
	}
	c.Flags().BoolVarP(&long, "long", "l", false, "show type, mode, size and symlink targets")
	c.Flags().BoolVarP(&recursive, "recursive", "R", false, "list subdirectories recursively")
	return c
}

// printListing prints like `nix store ls`: the entries of a directory (or
// the node itself), one per line, with full paths when recursive.
func printListing(w io.Writer, name string, n *nar.Node, long, recursive bool) {
	if n.Type != nar.TypeDirectory || recursive {
		printEntry(w, name, n, long)
	}
	if n.Type != nar.TypeDirectory {
		return
	}
	names := make([]string, 0, len(n.Entries))
	for k := range n.Entries {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		c := n.Entries[k]
		if recursive {
			printListing(w, path.Join(name, k), c, long, true)
		} else {
			printEntry(w, k, c, long)
		}
	}
}

// printEntry prints one entry; names and targets come from the cache and
// are quoted where they need it (quoteName).
func printEntry(w io.Writer, name string, n *nar.Node, long bool) {
	name = quoteName(name)
	if !long {
		fmt.Fprintln(w, name)
		return
	}
	switch n.Type {
	case nar.TypeDirectory:
		fmt.Fprintf(w, "dr-xr-xr-x %20d %s\n", 0, name)
	case nar.TypeSymlink:
		fmt.Fprintf(w, "lrwxrwxrwx %20d %s -> %s\n", 0, name, quoteName(n.Target))
	default:
		mode := "-r--r--r--"
		if n.Executable {
			mode = "-r-xr-xr-x"
		}
		fmt.Fprintf(w, "%s %20d %s\n", mode, n.Size, name)
	}
}
