package main

import (
	_ "embed"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
)

//go:embed narfs.service
var unitFile []byte

func installUnitCmd() *cobra.Command {
	var dir string
	c := &cobra.Command{
		Use:   "install-unit [flags]",
		Short: "Install the systemd unit narfs@.service (Type=notify; instance = escaped mountpoint)",
		Example: `  narfs install-unit && systemctl daemon-reload
  systemctl enable --now narfs@$(systemd-escape --path /mnt/store)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p := filepath.Join(dir, "narfs@.service")
			if err := os.WriteFile(p, unitFile, 0o644); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "installed", p)
			return nil
		},
	}
	c.Flags().StringVar(&dir, "unit-dir", "/etc/systemd/system", "directory to write narfs@.service to")
	return c
}
