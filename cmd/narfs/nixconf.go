package main

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
)

// nixConfTrustedKeys reads trusted-public-keys (and extra-) from nix.conf,
// the keys a Nix user already trusts. Missing file: no keys.
func nixConfTrustedKeys() string {
	dir := os.Getenv("NIX_CONF_DIR")
	if dir == "" {
		dir = "/etc/nix"
	}
	f, err := os.Open(filepath.Join(dir, "nix.conf"))
	if err != nil {
		return ""
	}
	defer f.Close()
	var keys []string
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
			keys = append(keys, strings.Fields(v)...)
		}
	}
	return strings.Join(keys, " ")
}
