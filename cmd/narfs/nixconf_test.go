package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestNixConfTrustedKeys(t *testing.T) {
	for name, tc := range map[string]struct{ conf, want string }{
		"no nix.conf": {"", nixDefaultTrustedKey},
		"not set":     {"substituters = https://x\n", nixDefaultTrustedKey},
		"replaced":    {"trusted-public-keys = a:1 b:2 # comment\n", "a:1 b:2"},
		"extra after": {"extra-trusted-public-keys = c:3\ntrusted-public-keys = a:1\n", "a:1 c:3"},
		"extra only":  {"extra-trusted-public-keys = c:3 d:4\n", nixDefaultTrustedKey + " c:3 d:4"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.conf != "" {
				if err := os.WriteFile(filepath.Join(dir, "nix.conf"), []byte(tc.conf), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			t.Setenv("NIX_CONF_DIR", dir)
			if got := nixConfTrustedKeys(); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestSplitStorePath(t *testing.T) {
	for in, want := range map[string][2]string{
		"/nix/store/abc-x/bin/y": {"abc-x", "bin/y"},
		"abc-x":                  {"abc-x", ""},
		"abc-x/":                 {"abc-x", ""},
		"/nix/store/abc-x":       {"abc-x", ""},
	} {
		if b, s := splitStorePath("/nix/store", in); b != want[0] || s != want[1] {
			t.Errorf("%q: %q %q, want %q", in, b, s, want)
		}
	}
}
