package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/narfs/narfs/remote"
	"github.com/narfs/narfs/remote/storepath"
)

func registerCmd(g *globalFlags) *cobra.Command {
	var closure bool
	c := &cobra.Command{
		Use:   "register [--closure] [STORE-URL…] PATH…",
		Short: "Print the registration of trusted paths for nix-store --load-db",
		Long: `Register prints, for each PATH (a store path, its base name or its hash part) with a
trusted narinfo, and with --closure for everything it references transitively, the
registration Nix's ` + "`nix-store --load-db`" + ` reads (the format of ` + "`nix-store --dump-db`" + `):
the path, its NarHash in base 16, its NarSize, its deriver (or an empty line), the number
of its references and one line per reference. References come before the paths that
refer to them. Only metadata is fetched (narinfos, and chunk indexes on caches narfs
indexed), never NARs; it is recorded in the cache directory, where a mount sharing it (the
default --cache-dir) finds it when a build opens the paths, without asking the cache again.

With an overlayfs whose lower layer is a narfs mount at /nix/store, this makes any Nix
(2.8 included) see the paths as valid, so a build uses them without substituting them and
reads only the files it opens (see README, Builds on narfs):

  narfs register --closure file:///srv/cache /nix/store/…-hello | nix-store --load-db

Signatures and content addresses are not part of the format: Nix records the paths as
unsigned. If any path cannot be resolved, nothing is printed and the exit status is 1.`,
		Args: func(_ *cobra.Command, args []string) error {
			_, paths, err := splitURLs(args, 1, -1, "PATH…")
			if err != nil {
				return err
			}
			for _, a := range paths {
				if _, _, err := parsePathArg(a); err != nil {
					return err
				}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			log, err := g.logger()
			if err != nil {
				return err
			}
			urls, paths, _ := splitURLs(args, 1, -1, "PATH…")
			// The walk looks up the closure itself, metadata only. What it
			// resolves is recorded in the cache dir: a mount sharing it (the
			// default) finds the narinfos and indexes there when the build
			// opens the paths, with no round trip.
			g.lookahead = false
			g.recordNarinfos = true
			store, err := g.openStore(cmd.Context(), urls, log)
			if err != nil {
				return err
			}
			defer store.Close()
			return runRegister(cmd.Context(), store, paths, closure, os.Stdout)
		},
	}
	c.Flags().BoolVar(&closure, "closure", false, "also register everything the paths reference, transitively")
	return c
}

func runRegister(ctx context.Context, store *remote.Core, args []string, closure bool, out io.Writer) error {
	r := &prefetchRun{store: store, pr: &progress{out: os.Stderr}}
	found := r.resolve(ctx, args, closure)
	if r.failed > 0 {
		return fmt.Errorf("%d paths could not be resolved: nothing registered", r.failed)
	}
	w := bufio.NewWriter(out)
	for _, p := range referencesFirst(found) {
		if err := writeRegistration(w, store.StoreDir(), p); err != nil {
			return err
		}
	}
	return w.Flush()
}

// referencesFirst orders paths so that each comes after the ones it
// references (among paths; self-references aside), ties by name, so the
// output is the same whatever order the lookups finished in.
func referencesFirst(paths []*remote.PathInfo) []*remote.PathInfo {
	byBase := make(map[string]*remote.PathInfo, len(paths))
	for _, p := range paths {
		byBase[p.Path.String()] = p
	}
	names := make([]string, 0, len(byBase))
	for n := range byBase {
		names = append(names, n)
	}
	slices.Sort(names)
	done := make(map[string]bool, len(names))
	out := make([]*remote.PathInfo, 0, len(names))
	// Iterative depth-first post-order: a closure may be deep (a long
	// chain of references) and reference cycles other than self-references
	// cannot exist in a store, but a hostile cache could sign one, so a
	// path on the stack is treated as done.
	type frame struct {
		p    *remote.PathInfo
		refs []string
	}
	for _, n := range names {
		if done[n] {
			continue
		}
		done[n] = true
		stack := []frame{{byBase[n], sortedRefs(byBase[n])}}
		for len(stack) > 0 {
			top := &stack[len(stack)-1]
			if len(top.refs) == 0 {
				out = append(out, top.p)
				stack = stack[:len(stack)-1]
				continue
			}
			ref := top.refs[0]
			top.refs = top.refs[1:]
			if q, ok := byBase[ref]; ok && !done[ref] {
				done[ref] = true
				stack = append(stack, frame{q, sortedRefs(q)})
			}
		}
	}
	return out
}

func sortedRefs(p *remote.PathInfo) []string {
	refs := make([]string, 0, len(p.NarInfo.References))
	for _, r := range p.NarInfo.References {
		refs = append(refs, r.String())
	}
	slices.Sort(refs)
	return refs
}

// writeRegistration writes one path in the format of Nix's
// makeValidityRegistration (store-api.cc), which decodeValidPathInfo
// reads back for --load-db: path, NarHash in base 16 without its
// algorithm, NarSize, deriver or "", the number of references, the
// references. Every field comes from a trusted narinfo; the deriver,
// which no signature covers, only when it is a well-formed .drv path
// (as in narfs's daemon protocol).
func writeRegistration(w *bufio.Writer, dir string, p *remote.PathInfo) error {
	ni := p.NarInfo
	if ni.NarHash.Algo != "sha256" || len(ni.NarHash.Digest) != 32 {
		return fmt.Errorf("%s: NarHash %s is not SHA-256, which Nix's database requires", p.Path.Abs(dir), ni.NarHash.Algo)
	}
	if ni.NarSize <= 0 {
		return fmt.Errorf("%s: NarSize unknown", p.Path.Abs(dir))
	}
	deriver := ""
	if d := ni.Deriver; d != "" && strings.HasSuffix(d, ".drv") {
		if _, err := storepath.Parse(d); err == nil {
			deriver = dir + "/" + d
		}
	}
	refs := sortedRefs(p)
	var b strings.Builder
	b.WriteString(p.Path.Abs(dir) + "\n")
	b.WriteString(hex.EncodeToString(ni.NarHash.Digest) + "\n")
	b.WriteString(strconv.FormatInt(ni.NarSize, 10) + "\n")
	b.WriteString(deriver + "\n")
	b.WriteString(strconv.Itoa(len(refs)) + "\n")
	for _, r := range refs {
		b.WriteString(dir + "/" + r + "\n")
	}
	_, err := w.WriteString(b.String())
	return err
}
