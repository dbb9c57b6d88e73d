package nar

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
)

// ErrInvalidListing is wrapped by every DecodeListing error about malformed input.
var ErrInvalidListing = errors.New("invalid NAR listing")

// ErrNotDirectory is wrapped by Find when a path goes through a non-directory.
var ErrNotDirectory = errors.New("not a directory")

// Listing is a NAR listing: the `.ls` JSON document (version 1) that
// `write-nar-listing=true` writes next to a narinfo.
type Listing struct {
	Root *Node
}

// Node is one node of a Listing. Directory entries are a map: lookups are
// O(1) and encoding sorts the names (byte order, as Nix does).
type Node struct {
	Type       Type
	Size       int64 // regular files
	Executable bool  // regular files
	NarOffset  int64 // regular files: offset of the contents in the uncompressed NAR; 0 = unknown
	Target     string
	Entries    map[string]*Node // directories; never nil for a decoded or built directory
}

// Find returns the node at path: "" or "/" is the root, otherwise
// slash-separated names ("bin/hello", leading and trailing slashes ignored).
// A missing name wraps fs.ErrNotExist; a path through a symlink or regular
// file wraps ErrNotDirectory.
func (l *Listing) Find(path string) (*Node, error) {
	n := l.Root
	if n == nil {
		return nil, fmt.Errorf("nar listing: %q: %w", path, fs.ErrNotExist)
	}
	p := strings.Trim(path, "/")
	for p != "" {
		name := p
		if i := strings.IndexByte(p, '/'); i >= 0 {
			name, p = p[:i], p[i+1:]
		} else {
			p = ""
		}
		if n.Type != TypeDirectory {
			return nil, fmt.Errorf("nar listing: %q: %w", path, ErrNotDirectory)
		}
		child, ok := n.Entries[name]
		if !ok {
			return nil, fmt.Errorf("nar listing: %q: %w", path, fs.ErrNotExist)
		}
		n = child
	}
	return n, nil
}

// BuildListing reads a NAR from r and returns its listing, with NarOffset set
// for every regular file.
func BuildListing(r io.Reader) (*Listing, error) {
	nr := NewReader(r)
	var b ListingBuilder
	for {
		h, err := nr.Next()
		if err == io.EOF {
			return b.Listing(), nil
		}
		if err != nil {
			return nil, err
		}
		b.Add(h)
	}
}

// ListingBuilder assembles a Listing from the headers a Reader returns, in
// their order, for callers that do more with each header (extract it, say)
// than BuildListing does.
type ListingBuilder struct {
	root  *Node
	stack []openDir // directories on the path to the current node
}

type openDir struct {
	path string
	node *Node
}

// Add records the node of h. Headers must come from a Reader, which
// guarantees every entry follows its parent directory.
func (b *ListingBuilder) Add(h *Header) {
	n := &Node{Type: h.Type}
	switch h.Type {
	case TypeRegular:
		n.Size, n.Executable, n.NarOffset = h.Size, h.Executable, h.Offset
	case TypeSymlink:
		n.Target = h.LinkTarget
	case TypeDirectory:
		n.Entries = map[string]*Node{}
	}
	if h.Path == "" {
		b.root = n
	} else {
		parent, name := "", h.Path
		if i := strings.LastIndexByte(h.Path, '/'); i >= 0 {
			parent, name = h.Path[:i], h.Path[i+1:]
		}
		for b.stack[len(b.stack)-1].path != parent {
			b.stack = b.stack[:len(b.stack)-1]
		}
		b.stack[len(b.stack)-1].node.Entries[name] = n
	}
	if h.Type == TypeDirectory {
		b.stack = append(b.stack, openDir{h.Path, n})
	}
}

// Listing returns what was added; its Root is nil before the first Add.
func (b *ListingBuilder) Listing() *Listing {
	return &Listing{Root: b.root}
}
