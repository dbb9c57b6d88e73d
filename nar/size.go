package nar

import (
	"fmt"
	"math"
	"sort"
	"strings"
)

// The NAR encoding is canonical: every token is a little-endian length and
// zero-padded bytes, and entries come in byte order. So a listing fixes the
// NAR's exact size and every file's narOffset, and an unsigned .ls can be
// held against the signed NarSize before anyone trusts it.

// NARSize returns the exact size in bytes of the NAR the listing describes.
// It fails, wrapping ErrInvalidListing, if no NAR can match the listing:
// negative or overflowing sizes, names or targets the Reader would reject,
// nesting of MaxDepth or more, or a total beyond math.MaxInt64.
func (l *Listing) NARSize() (int64, error) {
	s := sizer{}
	if err := s.root(l); err != nil {
		return 0, err
	}
	return s.off, nil
}

// Check verifies that the listing describes a NAR of exactly narSize bytes
// and that every file's NarOffset is where that NAR puts its contents. A
// NarOffset of 0 means unknown (DecodeListing's reading of a missing
// "narOffset", which newer Nix versions omit) and is accepted. Errors wrap
// ErrInvalidListing.
func (l *Listing) Check(narSize int64) error {
	s := sizer{checkOffsets: true}
	if err := s.root(l); err != nil {
		return err
	}
	if s.off != narSize {
		return fmt.Errorf("nar listing: describes a NAR of %d bytes, not %d: %w", s.off, narSize, ErrInvalidListing)
	}
	return nil
}

// tokenSize is the encoded size of a string token: length, bytes, padding.
func tokenSize(n int) int64 {
	return 8 + int64(n) + int64(padding(uint64(n)))
}

// Encoded sizes of the fixed token sequences around nodes.
var (
	sizeMagic    = tokenSize(len(narMagic))
	sizeOpenType = tokenSize(1) + tokenSize(len("type")) // "(" "type"
	sizeClose    = tokenSize(1)                          // ")"
	// "(" "type" "regular" ["executable" ""] "contents" <size>, up to the contents
	sizeRegular    = sizeOpenType + tokenSize(len("regular")) + tokenSize(len("contents")) + 8
	sizeExecutable = tokenSize(len("executable")) + tokenSize(len(executableEmpty))
	// "(" "type" "symlink" "target" <target> ")", less the target
	sizeSymlink = sizeOpenType + tokenSize(len("symlink")) + tokenSize(len("target")) + sizeClose
	// "(" "type" "directory", then the entries and ")"
	sizeDirectory = sizeOpenType + tokenSize(len("directory"))
	// "entry" "(" "name" <name> "node", less the name; the node and ")" follow
	sizeEntry = tokenSize(len("entry")) + tokenSize(1) + tokenSize(len("name")) + tokenSize(len("node"))
)

// sizer walks a listing in NAR order, keeping the offset the NAR would be at.
type sizer struct {
	off          int64
	overflow     bool // off would exceed math.MaxInt64
	checkOffsets bool
	path         []string // for errors
}

func (s *sizer) root(l *Listing) error {
	if l.Root == nil {
		return fmt.Errorf("nar listing: no root: %w", ErrInvalidListing)
	}
	s.add(sizeMagic)
	return s.node(l.Root, 0)
}

// add advances the offset. Sizes come from hostile caches: past
// math.MaxInt64 it records the overflow instead of wrapping.
func (s *sizer) add(n int64) {
	if s.overflow || n > math.MaxInt64-s.off {
		s.overflow = true
		return
	}
	s.off += n
}

func (s *sizer) errorf(format string, args ...any) error {
	return fmt.Errorf("nar listing: %q: %s: %w", strings.Join(s.path, "/"), fmt.Sprintf(format, args...), ErrInvalidListing)
}

func (s *sizer) overflowed() error {
	if s.overflow {
		return s.errorf("NAR size overflows int64")
	}
	return nil
}

func (s *sizer) node(n *Node, depth int) error {
	if n == nil {
		return s.errorf("nil node")
	}
	if depth >= MaxDepth {
		return s.errorf("nesting deeper than %d", MaxDepth)
	}
	switch n.Type {
	case TypeRegular:
		if n.Size < 0 {
			return s.errorf("negative size %d", n.Size)
		}
		s.add(sizeRegular)
		if n.Executable {
			s.add(sizeExecutable)
		}
		if err := s.overflowed(); err != nil {
			return err
		}
		if s.checkOffsets && n.NarOffset != 0 && n.NarOffset != s.off {
			return s.errorf("narOffset %d, but the NAR puts the contents at %d", n.NarOffset, s.off)
		}
		s.add(n.Size)
		s.add(int64(padding(uint64(n.Size))))
		s.add(sizeClose)
	case TypeSymlink:
		if why := checkTarget(n.Target); why != "" {
			return s.errorf("%s", why)
		}
		s.add(sizeSymlink + tokenSize(len(n.Target)))
	case TypeDirectory:
		s.add(sizeDirectory)
		names := make([]string, 0, len(n.Entries))
		for name := range n.Entries {
			names = append(names, name)
		}
		sort.Strings(names) // byte order, as in the NAR
		for _, name := range names {
			if why := checkName(name); why != "" {
				return s.errorf("%s", why)
			}
			s.path = append(s.path, name)
			s.add(sizeEntry + tokenSize(len(name)))
			if err := s.node(n.Entries[name], depth+1); err != nil {
				return err
			}
			s.add(sizeClose) // of the entry
			s.path = s.path[:len(s.path)-1]
		}
		s.add(sizeClose)
	default:
		return s.errorf("node of type %v", n.Type)
	}
	return s.overflowed()
}

// Memory costs behind MemSize, for 64-bit Go with swiss-table maps: a Node
// is a 64-byte allocation; a map costs its header and, small, one group of
// 8 slots; each entry a slot (16-byte key, 8-byte pointer, control byte)
// at the average load of a map grown by doubling.
const (
	memNode     = 64
	memMap      = 48 + 8 + 8*24
	memMapEntry = 40
)

// MemSize estimates the bytes the decoded listing holds in memory: node
// structs, directory maps with their entries, names and symlink targets. It
// is meant for budgeting listing caches, not accounting: the real figure
// depends on the allocator, the map's growth history and on strings shared
// with other data, and is typically within a factor of 1.5 of this one.
func (l *Listing) MemSize() int64 {
	var total int64
	var walk func(n *Node)
	walk = func(n *Node) {
		if n == nil {
			return
		}
		total += memNode + roundString(len(n.Target))
		if n.Entries == nil {
			return
		}
		total += memMap
		if len(n.Entries) > 8 {
			total += int64(len(n.Entries)-8) * memMapEntry
		}
		for name, c := range n.Entries {
			total += roundString(len(name))
			walk(c)
		}
	}
	walk(l.Root)
	return total
}

// roundString is the heap cost of string bytes: small allocations come in
// 8-byte steps.
func roundString(n int) int64 {
	return int64(n+7) &^ 7
}
