package nar

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

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
			err = p.objectOf(func(name string) error {
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
			}, true)
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
// parser positioned at the value. Keys must be unique: object checks,
// unless value does (entries, whose names go into a map anyway).
func (p *lsParser) object(value func(key string) error) error {
	return p.objectOf(value, false)
}

func (p *lsParser) objectOf(value func(key string) error, valueChecksDups bool) error {
	p.skipSpace()
	if !p.consume('{') {
		return p.errorf("expected '{'")
	}
	p.skipSpace()
	if p.consume('}') {
		return nil
	}
	// A node has a handful of keys: a slice until it has more.
	var few [8]string
	seen, many := few[:0], map[string]bool(nil)
	for {
		p.skipSpace()
		key, err := p.string()
		if err != nil {
			return err
		}
		switch {
		case valueChecksDups:
		case many != nil:
			if many[key] {
				return p.errorf("duplicate key %q", key)
			}
			many[key] = true
		default:
			for _, k := range seen {
				if k == key {
					return p.errorf("duplicate key %q", key)
				}
			}
			if seen = append(seen, key); len(seen) == len(few) {
				many = make(map[string]bool, 2*len(few))
				for _, k := range seen {
					many[k] = true
				}
			}
		}
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
