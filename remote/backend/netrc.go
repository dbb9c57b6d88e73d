package backend

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"
)

// netrc parsing is done here rather than with a library: the format is a
// dozen lines of tokenising, the well-known Go parsers are unmaintained or
// pull in more than we need, and we only read login/password.

// netrcEntry is one machine (or the default) from a netrc file.
type netrcEntry struct {
	login, password string
}

// netrcFile holds the parsed entries; read-only after parsing.
type netrcFile struct {
	machines map[string]netrcEntry
	def      *netrcEntry
}

// maxNetrcSize bounds what we read: a netrc is a few lines.
const maxNetrcSize = 1 << 20

// loadNetrc parses path; a missing file yields nil and no error.
func loadNetrc(path string) (*netrcFile, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("netrc: %w", err)
	}
	defer f.Close()
	n, err := parseNetrc(io.LimitReader(f, maxNetrcSize))
	if err != nil {
		return nil, fmt.Errorf("netrc %s: %w", path, err)
	}
	return n, nil
}

// parseNetrc reads the curl/ftp netrc format: whitespace-separated tokens
// "machine NAME", "default", "login L", "password P", "account A",
// "macdef NAME" (followed by lines up to an empty line, skipped).
func parseNetrc(r io.Reader) (*netrcFile, error) {
	n := &netrcFile{machines: map[string]netrcEntry{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), maxNetrcSize)
	var toks []string
	inMacro := false
	for sc.Scan() {
		line := sc.Text()
		if inMacro {
			if strings.TrimSpace(line) == "" {
				inMacro = false
			}
			continue
		}
		if t := strings.TrimSpace(line); strings.HasPrefix(t, "#") {
			continue
		}
		fields := strings.Fields(line)
		for i := 0; i < len(fields); i++ {
			if fields[i] == "macdef" {
				inMacro = true
				break
			}
			toks = append(toks, fields[i])
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	var cur *netrcEntry
	var curName string
	isDefault := false
	flush := func() {
		if cur == nil {
			return
		}
		if isDefault {
			if n.def == nil {
				n.def = cur
			}
		} else if _, dup := n.machines[curName]; !dup {
			// The first entry for a host wins, as in curl.
			n.machines[curName] = *cur
		}
	}
	for i := 0; i < len(toks); i++ {
		next := func() (string, error) {
			if i+1 >= len(toks) {
				return "", fmt.Errorf("%q without a value", toks[i])
			}
			i++
			return toks[i], nil
		}
		switch toks[i] {
		case "machine":
			flush()
			name, err := next()
			if err != nil {
				return nil, err
			}
			cur, curName, isDefault = &netrcEntry{}, strings.ToLower(name), false
		case "default":
			flush()
			cur, curName, isDefault = &netrcEntry{}, "", true
		case "login", "password", "account":
			key := toks[i]
			v, err := next()
			if err != nil {
				return nil, err
			}
			if cur == nil {
				return nil, fmt.Errorf("%q outside a machine entry", key)
			}
			switch key {
			case "login":
				cur.login = v
			case "password":
				cur.password = v
			}
		default:
			// The token is not quoted back: it may be part of a password.
			return nil, fmt.Errorf("unexpected token #%d", i+1)
		}
	}
	flush()
	return n, nil
}

// lookup returns the credentials for host (no port, as curl matches).
func (n *netrcFile) lookup(host string) (netrcEntry, bool) {
	if n == nil {
		return netrcEntry{}, false
	}
	if e, ok := n.machines[strings.ToLower(host)]; ok {
		return e, true
	}
	if n.def != nil {
		return *n.def, true
	}
	return netrcEntry{}, false
}
