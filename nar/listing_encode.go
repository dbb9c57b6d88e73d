package nar

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
)

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
