package main

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
)

// nixDefaultTrustedKey is Nix's built-in trusted-public-keys.
const nixDefaultTrustedKey = "cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY="

// nixConfTrustedKeys reads trusted-public-keys (and extra-) from nix.conf,
// the keys a Nix user already trusts. Without a nix.conf setting it is
// Nix's own default, cache.nixos.org's key.
func nixConfTrustedKeys() string {
	dir := os.Getenv("NIX_CONF_DIR")
	if dir == "" {
		dir = "/etc/nix"
	}
	f, err := os.Open(filepath.Join(dir, "nix.conf"))
	if err != nil {
		return nixDefaultTrustedKey
	}
	defer f.Close()
	keys, extra := []string{nixDefaultTrustedKey}, []string(nil)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "trusted-public-keys":
			keys = strings.Fields(v)
		case "extra-trusted-public-keys":
			extra = append(extra, strings.Fields(v)...)
		}
	}
	return strings.Join(append(keys, extra...), " ")
}
