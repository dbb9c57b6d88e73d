package main

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
)

// nixDefaultTrustedKey is Nix's built-in trusted-public-keys.
const nixDefaultTrustedKey = "cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY="

// nixDefaultSubstituter is Nix's built-in substituters.
const nixDefaultSubstituter = "https://cache.nixos.org"

// nixConfTrustedKeys reads trusted-public-keys (and extra-) from nix.conf,
// the keys a Nix user already trusts. Without a nix.conf setting it is
// Nix's own default, cache.nixos.org's key.
func nixConfTrustedKeys() string {
	return strings.Join(nixConfList("trusted-public-keys", nixDefaultTrustedKey), " ")
}

// nixConfSubstituters reads substituters (and extra-) from nix.conf, the
// caches a Nix user already substitutes from; Nix's default without one.
func nixConfSubstituters() []string {
	return nixConfList("substituters", nixDefaultSubstituter)
}

// nixConfList is a list setting of $NIX_CONF_DIR/nix.conf (or
// /etc/nix/nix.conf) as Nix reads it: the last NAME line replaces def,
// every extra-NAME line appends.
func nixConfList(name, def string) []string {
	dir := os.Getenv("NIX_CONF_DIR")
	if dir == "" {
		dir = "/etc/nix"
	}
	vals, extra := strings.Fields(def), []string(nil)
	f, err := os.Open(filepath.Join(dir, "nix.conf"))
	if err != nil {
		return vals
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case name:
			vals = strings.Fields(v)
		case "extra-" + name:
			extra = append(extra, strings.Fields(v)...)
		}
	}
	return append(vals, extra...)
}
