package nar

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
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

// Encode writes the listing exactly as Nix 2.8 does: compact JSON, entries
// in byte order, "executable" only when true, "narOffset" when non-zero.
func (l *Listing) Encode(w io.Writer) error {
	b, err := l.MarshalJSON()
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// MarshalJSON returns the bytes Encode writes.
func (l *Listing) MarshalJSON() ([]byte, error) {
	if l.Root == nil {
		return nil, errors.New("nar listing: no root")
	}
	b := []byte(`{"version":1,"root":`)
	b, err := appendNode(b, l.Root)
	if err != nil {
		return nil, err
	}
	return append(b, '}'), nil
}

func appendNode(b []byte, n *Node) ([]byte, error) {
	switch n.Type {
	case TypeRegular:
		b = append(b, `{"type":"regular","size":`...)
		b = strconv.AppendInt(b, n.Size, 10)
		if n.Executable {
			b = append(b, `,"executable":true`...)
		}
		if n.NarOffset != 0 {
			b = append(b, `,"narOffset":`...)
			b = strconv.AppendInt(b, n.NarOffset, 10)
		}
		return append(b, '}'), nil
	case TypeSymlink:
		b = append(b, `{"type":"symlink","target":`...)
		return append(appendJSONString(b, n.Target), '}'), nil
	case TypeDirectory:
		b = append(b, `{"type":"directory","entries":{`...)
		names := make([]string, 0, len(n.Entries))
		for name := range n.Entries {
			names = append(names, name)
		}
		sort.Strings(names)
		for i, name := range names {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(appendJSONString(b, name), ':')
			var err error
			if b, err = appendNode(b, n.Entries[name]); err != nil {
				return nil, err
			}
		}
		return append(b, "}}"...), nil
	}
	return nil, fmt.Errorf("nar listing: cannot encode node of type %v", n.Type)
}

// appendJSONString escapes like Nix 2.8's toJSON: '"' and '\\' with a
// backslash, \n \r \t, other bytes below 0x20 as \u00xx, everything else
// (including bytes ≥ 0x80) verbatim.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c == '\n':
			b = append(b, `\n`...)
		case c == '\r':
			b = append(b, `\r`...)
		case c == '\t':
			b = append(b, `\t`...)
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&15])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

// DecodeListing parses a `.ls` document strictly: version must be 1, every
// node needs a known type and exactly the fields of that type (a missing
// "executable" means false, a missing "narOffset" unknown), names and
// targets obey the Reader's rules, numbers are non-negative integers that
// fit int64, keys are unique and nesting is below MaxDepth. Unknown keys are
// rejected. Strings are kept byte for byte: Nix 2.8 writes names verbatim,
// even when they are not UTF-8.
func DecodeListing(data []byte) (*Listing, error) {
	p := &lsParser{data: data}
	l := &Listing{}
	var haveVersion bool
	err := p.object(func(key string) error {
		switch key {
		case "version":
			v, err := p.number()
			if err != nil {
				return err
			}
			if v != 1 {
				return p.errorf("unsupported version %d", v)
			}
			haveVersion = true
		case "root":
			n, err := p.node(0)
			if err != nil {
				return err
			}
			l.Root = n
		default:
			// Like narinfo, tolerate what a newer Nix may add.
			return p.skipValue(0)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	p.skipSpace()
	if p.pos != len(p.data) {
		return nil, p.errorf("trailing data")
	}
	if !haveVersion || l.Root == nil {
		return nil, p.errorf("missing \"version\" or \"root\"")
	}
	return l, nil
}

type lsParser struct {
	data []byte
	pos  int
}

func (p *lsParser) errorf(format string, args ...any) error {
	return fmt.Errorf("nar listing: %s at byte %d: %w", fmt.Sprintf(format, args...), p.pos, ErrInvalidListing)
}

func (p *lsParser) node(depth int) (*Node, error) {
	if depth >= MaxDepth {
		return nil, p.errorf("nesting deeper than %d", MaxDepth)
	}
	n := &Node{}
	var typ string
	var haveSize, haveExec, haveTarget bool
	err := p.object(func(key string) error {
		var err error
		switch key {
		case "type":
			typ, err = p.string()
		case "size":
			n.Size, err = p.number()
			haveSize = true
		case "executable":
			n.Executable, err = p.boolean()
			haveExec = true
		case "narOffset":
			n.NarOffset, err = p.number()
		case "target":
			n.Target, err = p.string()
			haveTarget = true
		case "entries":
			n.Entries = map[string]*Node{}
			err = p.object(func(name string) error {
				if why := checkName(name); why != "" {
					return p.errorf("%s", why)
				}
				if _, dup := n.Entries[name]; dup {
					return p.errorf("duplicate entry %q", name)
				}
				child, err := p.node(depth + 1)
				if err != nil {
					return err
				}
				n.Entries[name] = child
				return nil
			})
		default:
			err = p.skipValue(depth)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	switch typ {
	case "regular":
		n.Type = TypeRegular
		if !haveSize || haveTarget || n.Entries != nil {
			return nil, p.errorf("regular node needs \"size\" and no \"target\" or \"entries\"")
		}
	case "symlink":
		n.Type = TypeSymlink
		if haveSize || haveExec || n.NarOffset != 0 || n.Entries != nil || !haveTarget {
			return nil, p.errorf("symlink node needs exactly \"target\"")
		}
		if why := checkTarget(n.Target); why != "" {
			return nil, p.errorf("%s", why)
		}
	case "directory":
		n.Type = TypeDirectory
		if haveSize || haveExec || n.NarOffset != 0 || haveTarget || n.Entries == nil {
			return nil, p.errorf("directory node needs exactly \"entries\"")
		}
	default:
		return nil, p.errorf("unknown node type %q", typ)
	}
	return n, nil
}

// skipValue skips one JSON value of a key this parser does not know.
func (p *lsParser) skipValue(depth int) error {
	if depth >= MaxDepth {
		return p.errorf("nesting deeper than %d", MaxDepth)
	}
	p.skipSpace()
	if p.pos >= len(p.data) {
		return p.errorf("unexpected end")
	}
	switch c := p.data[p.pos]; {
	case c == '"':
		_, err := p.string()
		return err
	case c == '{':
		return p.object(func(string) error { return p.skipValue(depth + 1) })
	case c == '[':
		p.pos++
		p.skipSpace()
		if p.consume(']') {
			return nil
		}
		for {
			if err := p.skipValue(depth + 1); err != nil {
				return err
			}
			p.skipSpace()
			if p.consume(']') {
				return nil
			}
			if !p.consume(',') {
				return p.errorf("expected ',' or ']'")
			}
		}
	case c == 't' || c == 'f':
		_, err := p.boolean()
		return err
	case c == 'n':
		if !bytes.HasPrefix(p.data[p.pos:], []byte("null")) {
			return p.errorf("invalid literal")
		}
		p.pos += 4
		return nil
	case c == '-' || (c >= '0' && c <= '9'):
		// Accept any JSON number, fractions and exponents included.
		start := p.pos
		for p.pos < len(p.data) && strings.IndexByte("+-.eE0123456789", p.data[p.pos]) >= 0 {
			p.pos++
		}
		if _, err := strconv.ParseFloat(string(p.data[start:p.pos]), 64); err != nil {
			return p.errorf("invalid number")
		}
		return nil
	}
	return p.errorf("unexpected %q", p.data[p.pos])
}

// object parses {"key": value, ...}, calling value for each key with the
// parser positioned at the value. Keys must be unique.
func (p *lsParser) object(value func(key string) error) error {
	p.skipSpace()
	if !p.consume('{') {
		return p.errorf("expected '{'")
	}
	p.skipSpace()
	if p.consume('}') {
		return nil
	}
	seen := map[string]bool{}
	for {
		p.skipSpace()
		key, err := p.string()
		if err != nil {
			return err
		}
		if seen[key] {
			return p.errorf("duplicate key %q", key)
		}
		seen[key] = true
		p.skipSpace()
		if !p.consume(':') {
			return p.errorf("expected ':'")
		}
		p.skipSpace()
		if err := value(key); err != nil {
			return err
		}
		p.skipSpace()
		if p.consume('}') {
			return nil
		}
		if !p.consume(',') {
			return p.errorf("expected ',' or '}'")
		}
	}
}

func (p *lsParser) string() (string, error) {
	if !p.consume('"') {
		return "", p.errorf("expected string")
	}
	start := p.pos
	// Fast path: no escapes.
	for p.pos < len(p.data) {
		c := p.data[p.pos]
		if c == '"' {
			s := string(p.data[start:p.pos])
			p.pos++
			return s, nil
		}
		if c == '\\' || c < 0x20 {
			break
		}
		p.pos++
	}
	buf := append([]byte(nil), p.data[start:p.pos]...)
	for p.pos < len(p.data) {
		c := p.data[p.pos]
		switch {
		case c == '"':
			p.pos++
			return string(buf), nil
		case c < 0x20:
			return "", p.errorf("control character in string")
		case c != '\\':
			buf = append(buf, c)
			p.pos++
			continue
		}
		p.pos++
		if p.pos >= len(p.data) {
			break
		}
		e := p.data[p.pos]
		p.pos++
		switch e {
		case '"', '\\', '/':
			buf = append(buf, e)
		case 'b':
			buf = append(buf, '\b')
		case 'f':
			buf = append(buf, '\f')
		case 'n':
			buf = append(buf, '\n')
		case 'r':
			buf = append(buf, '\r')
		case 't':
			buf = append(buf, '\t')
		case 'u':
			r, ok := p.hex4()
			if !ok {
				return "", p.errorf("bad \\u escape")
			}
			if r >= 0xd800 && r < 0xdc00 && p.pos+1 < len(p.data) && p.data[p.pos] == '\\' && p.data[p.pos+1] == 'u' {
				save := p.pos
				p.pos += 2
				if lo, ok := p.hex4(); ok && lo >= 0xdc00 && lo < 0xe000 {
					r = 0x10000 + (r-0xd800)<<10 + (lo - 0xdc00)
				} else {
					p.pos = save
				}
			}
			buf = appendRune(buf, r)
		default:
			return "", p.errorf("bad escape \\%c", e)
		}
	}
	return "", p.errorf("unterminated string")
}

func appendRune(b []byte, r rune) []byte {
	var tmp [4]byte
	return append(b, tmp[:utf8.EncodeRune(tmp[:], r)]...)
}

func (p *lsParser) hex4() (rune, bool) {
	if p.pos+4 > len(p.data) {
		return 0, false
	}
	v, err := strconv.ParseUint(string(p.data[p.pos:p.pos+4]), 16, 32)
	if err != nil {
		return 0, false
	}
	p.pos += 4
	return rune(v), true
}

// number parses a non-negative JSON integer that fits int64.
func (p *lsParser) number() (int64, error) {
	start := p.pos
	for p.pos < len(p.data) && p.data[p.pos] >= '0' && p.data[p.pos] <= '9' {
		p.pos++
	}
	digits := p.data[start:p.pos]
	if len(digits) == 0 {
		return 0, p.errorf("expected a non-negative integer")
	}
	if len(digits) > 1 && digits[0] == '0' {
		return 0, p.errorf("leading zero in number")
	}
	if p.pos < len(p.data) && bytes.IndexByte([]byte(".eE"), p.data[p.pos]) >= 0 {
		return 0, p.errorf("expected an integer")
	}
	v, err := strconv.ParseInt(string(digits), 10, 64)
	if err != nil {
		return 0, p.errorf("number %s out of range", digits)
	}
	return v, nil
}

func (p *lsParser) boolean() (bool, error) {
	switch {
	case bytes.HasPrefix(p.data[p.pos:], []byte("true")):
		p.pos += 4
		return true, nil
	case bytes.HasPrefix(p.data[p.pos:], []byte("false")):
		p.pos += 5
		return false, nil
	}
	return false, p.errorf("expected true or false")
}

func (p *lsParser) consume(c byte) bool {
	if p.pos < len(p.data) && p.data[p.pos] == c {
		p.pos++
		return true
	}
	return false
}

func (p *lsParser) skipSpace() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}
