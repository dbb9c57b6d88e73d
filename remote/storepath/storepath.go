package storepath

import (
	"errors"
	"fmt"
	"strings"
)

// DefaultStoreDir is the store directory of every standard Nix install.
const DefaultStoreDir = "/nix/store"

// ErrInvalid marks malformed nix32 text, hashes, store paths and CA fields.
var ErrInvalid = errors.New("invalid store path")

const (
	// HashLen is the length of a store path's hash part: 160 bits in nix32.
	HashLen = 32
	// MaxNameLen is Nix's StorePath::MaxPathLen, the longest name allowed.
	MaxNameLen = 211
)

// StorePath is a store object's base name split into its hash part and name.
// Build it with Parse so that both halves are known valid.
type StorePath struct {
	Hash string // 32 nix32 characters
	Name string
}

// ValidHashPart reports whether s is a well-formed store path hash part.
func ValidHashPart(s string) bool {
	if len(s) != HashLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if nix32Value[s[i]] < 0 {
			return false
		}
	}
	return true
}

// ValidName reports whether name is a legal store path name (HEAD's
// checkName, which also rejects "." and ".." as a first dash component).
func ValidName(name string) bool {
	if len(name) == 0 || len(name) > MaxNameLen {
		return false
	}
	if name[0] == '.' {
		switch {
		case name == "." || name == "..":
			return false
		case strings.HasPrefix(name, ".-") || strings.HasPrefix(name, "..-"):
			return false
		}
	}
	for i := 0; i < len(name); i++ {
		if !nameChar(name[i]) {
			return false
		}
	}
	return true
}

func nameChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("+-._?=", c) >= 0
}

// Parse splits and validates a base name "<hash>-<name>".
func Parse(baseName string) (StorePath, error) {
	if len(baseName) < HashLen+2 || baseName[HashLen] != '-' {
		return StorePath{}, fmt.Errorf("store path %q: want <32-char hash>-<name>: %w", baseName, ErrInvalid)
	}
	p := StorePath{Hash: baseName[:HashLen], Name: baseName[HashLen+1:]}
	if !ValidHashPart(p.Hash) {
		return StorePath{}, fmt.Errorf("store path %q: bad hash part: %w", baseName, ErrInvalid)
	}
	if !ValidName(p.Name) {
		return StorePath{}, fmt.Errorf("store path %q: bad name: %w", baseName, ErrInvalid)
	}
	return p, nil
}

// ParseAbs parses "<storeDir>/<base name>".
func ParseAbs(storeDir, path string) (StorePath, error) {
	base, ok := strings.CutPrefix(path, storeDir+"/")
	if !ok {
		return StorePath{}, fmt.Errorf("store path %q: not in store %q: %w", path, storeDir, ErrInvalid)
	}
	return Parse(base)
}

// String returns the base name "<hash>-<name>".
func (p StorePath) String() string { return p.Hash + "-" + p.Name }

// Abs returns the full path of p in storeDir.
func (p StorePath) Abs(storeDir string) string { return storeDir + "/" + p.String() }

// IsZero reports whether p is the zero StorePath.
func (p StorePath) IsZero() bool { return p.Hash == "" && p.Name == "" }
