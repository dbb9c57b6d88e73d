package narinfo

import (
	"bytes"
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"

	"github.com/narfs/narfs/remote/storepath"
)

var (
	// ErrInvalid marks a narinfo or nix-cache-info that does not parse.
	ErrInvalid = errors.New("invalid narinfo")
	// ErrUntrusted marks a narinfo that neither a trusted signature nor its
	// content address vouches for.
	ErrUntrusted = errors.New("untrusted narinfo")
)

// MaxSize bounds the narinfo and nix-cache-info files Parse accepts. Real
// ones are well under 10 KiB even with thousands of references.
const MaxSize = 1 << 20

// NarInfo is the metadata of one store object in a binary cache.
type NarInfo struct {
	StorePath   storepath.StorePath
	StoreDir    string // directory of the StorePath line; "" means /nix/store
	URL         string // NAR location, relative to the cache root or absolute
	Compression string // as written; "" means bzip2, see EffectiveCompression
	FileHash    *storepath.Hash
	FileSize    int64 // 0 = unknown
	NarHash     storepath.Hash
	NarSize     int64
	References  []storepath.StorePath
	Deriver     string   // .drv base name; "" when absent or "unknown-deriver"
	System      string   // Nix 2.8/2.9 only
	Sigs        []string // raw "<key name>:<base64>"
	CA          string   // as written; checked by VerifyCA, not Parse
	// Extra holds the lines of keys Nix does not know, in order (Nix
	// ignores them). narfs's chunk index lives here (IndexURL...).
	Extra []Field
}

// Field is one "Key: value" line.
type Field struct{ Key, Value string }

// Get returns the value of the first Extra field named key.
func (n *NarInfo) Get(key string) (string, bool) {
	for _, f := range n.Extra {
		if f.Key == key {
			return f.Value, true
		}
	}
	return "", false
}

// GetAll returns the values of every Extra field named key.
func (n *NarInfo) GetAll(key string) []string {
	var vs []string
	for _, f := range n.Extra {
		if f.Key == key {
			vs = append(vs, f.Value)
		}
	}
	return vs
}

// Set replaces every Extra field named key by one line per value, placed
// where the first one was (at the end if there was none).
func (n *NarInfo) Set(key string, values ...string) {
	var out []Field
	placed := false
	for _, f := range n.Extra {
		if f.Key != key {
			out = append(out, f)
			continue
		}
		if !placed {
			placed = true
			for _, v := range values {
				out = append(out, Field{key, v})
			}
		}
	}
	if !placed {
		for _, v := range values {
			out = append(out, Field{key, v})
		}
	}
	n.Extra = out
}

// storeDir is the directory used when printing paths; a NarInfo built by
// hand may leave StoreDir empty.
func (n *NarInfo) storeDir() string {
	if n.StoreDir == "" {
		return storepath.DefaultStoreDir
	}
	return n.StoreDir
}

// EffectiveCompression is the algorithm of the file at URL: Nix reads an
// absent or empty Compression as bzip2.
func (n *NarInfo) EffectiveCompression() string {
	if n.Compression == "" {
		return "bzip2"
	}
	return n.Compression
}

// Parse decodes a narinfo.
func Parse(data []byte) (*NarInfo, error) {
	n, err := parse(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return n, nil
}

func parse(data []byte) (*NarInfo, error) {
	if len(data) > MaxSize {
		return nil, fmt.Errorf("%d bytes, limit %d", len(data), MaxSize)
	}
	var (
		n                          NarInfo
		havePath, haveHash, haveCA bool
		line                       int
	)
	for len(data) > 0 {
		line++
		eol := bytes.IndexByte(data, '\n')
		if eol < 0 {
			return nil, fmt.Errorf("line %d: no final newline", line)
		}
		key, value, ok := strings.Cut(string(data[:eol]), ": ")
		data = data[eol+1:]
		if !ok || strings.Contains(key, ":") {
			return nil, fmt.Errorf("line %d: want \"Key: value\"", line)
		}
		var err error
		switch key {
		case "StorePath":
			n.StoreDir, n.StorePath, err = parseAbs(value)
			havePath = err == nil
		case "URL":
			n.URL = value
		case "Compression":
			n.Compression = value
		case "FileHash":
			var h storepath.Hash
			h, err = storepath.ParseHash(value)
			n.FileHash = &h
		case "FileSize":
			n.FileSize, err = parseSize(value)
		case "NarHash":
			n.NarHash, err = storepath.ParseHash(value)
			if err == nil && n.NarHash.Algo != "sha256" {
				err = fmt.Errorf("NarHash %q is not sha256", value)
			}
			haveHash = err == nil
		case "NarSize":
			n.NarSize, err = parseSize(value)
		case "References":
			// Nix accepts a second References line only while the set is
			// still empty.
			if len(n.References) > 0 {
				err = errors.New("repeated References")
				break
			}
			for _, r := range strings.Fields(value) {
				p, perr := storepath.Parse(r)
				if perr != nil {
					err = perr
					break
				}
				n.References = append(n.References, p)
			}
		case "Deriver":
			if value != "unknown-deriver" {
				if _, err = storepath.Parse(value); err == nil {
					n.Deriver = value
				}
			}
		case "System":
			n.System = value
		case "Sig":
			n.Sigs = append(n.Sigs, value)
		case "CA":
			// Nix treats an empty CA as absent, so only a second real one
			// conflicts.
			if haveCA {
				err = errors.New("repeated CA")
				break
			}
			n.CA, haveCA = value, value != ""
		default:
			n.Extra = append(n.Extra, Field{key, value})
		}
		if err != nil {
			return nil, fmt.Errorf("line %d (%s): %w", line, key, err)
		}
	}
	switch {
	case !havePath:
		return nil, errors.New("no StorePath")
	case !haveHash:
		return nil, errors.New("no NarHash")
	case n.URL == "":
		return nil, errors.New("no URL")
	case n.NarSize == 0:
		return nil, errors.New("no NarSize")
	}
	return &n, nil
}

// parseAbs splits an absolute store path into its directory and base name.
func parseAbs(s string) (string, storepath.StorePath, error) {
	i := strings.LastIndexByte(s, '/')
	if i <= 0 || path.Clean(s[:i]) != s[:i] || !path.IsAbs(s[:i]) {
		return "", storepath.StorePath{}, fmt.Errorf("store path %q: not under an absolute, clean store directory: %w", s, storepath.ErrInvalid)
	}
	p, err := storepath.Parse(s[i+1:])
	return s[:i], p, err
}

// parseSize accepts the decimal digits Nix writes; no sign, no spaces.
func parseSize(s string) (int64, error) {
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, fmt.Errorf("size %q is not a decimal number", s)
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: out of range", s)
	}
	return v, nil
}
