package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

// infoJSON is `narfs info --json`; field names follow `nix path-info --json`.
type infoJSON struct {
	Path        string   `json:"path"`
	URL         string   `json:"url"`
	Compression string   `json:"compression"`
	FileHash    string   `json:"downloadHash,omitempty"`
	FileSize    int64    `json:"downloadSize,omitempty"`
	NarHash     string   `json:"narHash"`
	NarSize     int64    `json:"narSize"`
	References  []string `json:"references"`
	Deriver     string   `json:"deriver,omitempty"`
	Signatures  []string `json:"signatures,omitempty"`
	CA          string   `json:"ca,omitempty"`
	Trust       string   `json:"trust"`
	Cache       string   `json:"cache"` // the substituter that answered, redacted
}

func infoCmd(g *globalFlags) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "info [--json] [STORE-URL…] STORE-PATH|HASH",
		Short: "Show a path's narinfo and why it is trusted",
		Args:  pathArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			urls, rest, _ := splitURLs(args, 1, 1, "STORE-PATH")
			tg, err := g.resolveArg(cmd.Context(), urls, rest[0], true)
			if err != nil {
				return err
			}
			defer tg.store.Close()
			info, store := tg.info, tg.store
			ni := info.NarInfo
			j := infoJSON{
				Path:        info.Abs(store.StoreDir()),
				URL:         ni.URL,
				Compression: ni.EffectiveCompression(),
				FileSize:    ni.FileSize,
				NarHash:     ni.NarHash.String(),
				NarSize:     ni.NarSize,
				References:  []string{},
				Deriver:     ni.Deriver,
				Signatures:  ni.Sigs,
				CA:          ni.CA,
				Trust:       info.Trust,
				Cache:       info.Cache(),
			}
			if ni.FileHash != nil {
				j.FileHash = ni.FileHash.String()
			}
			for _, r := range ni.References {
				j.References = append(j.References, r.Abs(store.StoreDir()))
			}
			if asJSON {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(j)
			}
			// One line per field, whatever the cache put in it (escapeLine).
			line := func(field, value string) { fmt.Printf("%-13s%s\n", field+":", escapeLine(value)) }
			line("StorePath", j.Path)
			line("URL", j.URL)
			line("Compression", j.Compression)
			if j.FileHash != "" {
				line("FileHash", j.FileHash)
			}
			if j.FileSize != 0 {
				line("FileSize", fmt.Sprint(j.FileSize))
			}
			line("NarHash", j.NarHash)
			line("NarSize", fmt.Sprint(j.NarSize))
			line("References", strings.Join(j.References, " "))
			if j.Deriver != "" {
				line("Deriver", j.Deriver)
			}
			for _, s := range j.Signatures {
				line("Sig", s)
			}
			if j.CA != "" {
				line("CA", j.CA)
			}
			line("Trusted", j.Trust)
			line("Cache", j.Cache)
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}
