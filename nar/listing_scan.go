package nar

import (
	"bytes"
	"strconv"
	"unicode/utf8"
)

// The .ls parser's scanning of JSON tokens: strings, numbers, booleans.

// intern is string(b), without allocating for the keys and types every
// node repeats (a toolchain's listing has tens of thousands of nodes).
func intern(b []byte) string {
	switch string(b) { // compiled without a conversion
	case "type":
		return "type"
	case "size":
		return "size"
	case "executable":
		return "executable"
	case "narOffset":
		return "narOffset"
	case "entries":
		return "entries"
	case "target":
		return "target"
	case "regular":
		return "regular"
	case "directory":
		return "directory"
	case "symlink":
		return "symlink"
	}
	return string(b)
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
			s := intern(p.data[start:p.pos])
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
