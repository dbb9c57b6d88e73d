package nar

import (
	"errors"
	"fmt"
)

// ErrInvalid is wrapped by every error about malformed NAR or listing input.
var ErrInvalid = errors.New("invalid NAR")

// Limits enforced by the Reader and DecodeListing (Nix ≥ 2.35 caps).
const (
	// MaxDepth: nodes at depth ≥ MaxDepth are rejected; the root is depth 0.
	// Nix ≥ 2.35 refuses 64 levels, but 2.8 writes deeper trees and caches
	// hold them; this only bounds recursion.
	MaxDepth        = 1024
	MaxNameLen      = 255  // bytes in a directory entry name
	MaxTargetLen    = 4095 // bytes in a symlink target
	maxTagLen       = 32   // bytes in a structural token ("(", "type", ...)
	narMagic        = "nix-archive-1"
	executableEmpty = ""
)

// Type is the kind of a NAR node.
type Type uint8

const (
	TypeRegular Type = iota + 1
	TypeDirectory
	TypeSymlink
)

func (t Type) String() string {
	switch t {
	case TypeRegular:
		return "regular"
	case TypeDirectory:
		return "directory"
	case TypeSymlink:
		return "symlink"
	}
	return fmt.Sprintf("Type(%d)", uint8(t))
}

// Header describes one node of a NAR.
type Header struct {
	Path       string // "" for the root, otherwise slash-separated relative path, e.g. "bin/hello"
	Type       Type
	Executable bool   // regular files only
	Size       int64  // regular files: content length
	LinkTarget string // symlinks
	Offset     int64  // regular files: offset of the first content byte in the uncompressed NAR (Nix's narOffset)
}

// checkName reports why name cannot be a directory entry name, or "".
func checkName(name string) string {
	switch {
	case name == "":
		return "empty entry name"
	case len(name) > MaxNameLen:
		return "entry name longer than 255 bytes"
	case name == "." || name == "..":
		return fmt.Sprintf("entry name %q", name)
	}
	for i := 0; i < len(name); i++ {
		switch name[i] {
		case '/':
			return fmt.Sprintf("entry name %q contains '/'", name)
		case 0:
			return fmt.Sprintf("entry name %q contains NUL", name)
		}
	}
	return ""
}

// checkTarget reports why target cannot be a symlink target, or "".
func checkTarget(target string) string {
	switch {
	case target == "":
		return "empty symlink target"
	case len(target) > MaxTargetLen:
		return "symlink target longer than 4095 bytes"
	}
	for i := 0; i < len(target); i++ {
		if target[i] == 0 {
			return "symlink target contains NUL"
		}
	}
	return ""
}

func joinPath(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}
