package upload

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path"
	"strings"

	"github.com/narfs/narfs/remote/storepath"
)

// PathInfo is what the local Nix store knows about a valid path.
type PathInfo struct {
	StoreDir   string
	Path       storepath.StorePath
	NarHash    storepath.Hash
	NarSize    int64
	References []storepath.StorePath
	Deriver    string // base name, "" if unknown
	Sigs       []string
	CA         string
}

// Abs is the path's absolute store path.
func (p *PathInfo) Abs() string { return p.Path.Abs(p.StoreDir) }

// pathInfoJSON is one entry of `nix path-info --json`.
type pathInfoJSON struct {
	Path       string   `json:"path"` // only in the array form
	NarHash    string   `json:"narHash"`
	NarSize    int64    `json:"narSize"`
	References []string `json:"references"`
	Deriver    *string  `json:"deriver"`
	Signatures []string `json:"signatures"`
	CA         *string  `json:"ca"`
}

// ParsePathInfo decodes `nix path-info --json`: an array of objects with
// a "path" field (Nix 2.8 to 2.18), or an object keyed by store path
// (later versions, where an invalid path maps to null).
func ParsePathInfo(data []byte) ([]PathInfo, error) {
	var entries []pathInfoJSON
	data = bytes.TrimSpace(data)
	switch {
	case len(data) > 0 && data[0] == '[':
		if err := json.Unmarshal(data, &entries); err != nil {
			return nil, fmt.Errorf("nix path-info --json: %w", err)
		}
	case len(data) > 0 && data[0] == '{':
		var m map[string]*pathInfoJSON
		if err := json.Unmarshal(data, &m); err != nil {
			return nil, fmt.Errorf("nix path-info --json: %w", err)
		}
		for p, e := range m {
			if e == nil {
				return nil, fmt.Errorf("nix path-info: %s is not valid in the local store", p)
			}
			e.Path = p
			entries = append(entries, *e)
		}
	default:
		return nil, fmt.Errorf("nix path-info --json: want an array or an object, got %.40q", data)
	}
	out := make([]PathInfo, 0, len(entries))
	for _, e := range entries {
		p, err := e.pathInfo()
		if err != nil {
			return nil, fmt.Errorf("nix path-info --json: %s: %w", e.Path, err)
		}
		out = append(out, p)
	}
	return out, nil
}

func (e *pathInfoJSON) pathInfo() (PathInfo, error) {
	dir := path.Dir(e.Path)
	sp, err := storepath.ParseAbs(dir, e.Path)
	if err != nil {
		return PathInfo{}, err
	}
	p := PathInfo{StoreDir: dir, Path: sp, NarSize: e.NarSize, Sigs: e.Signatures}
	if p.NarHash, err = storepath.ParseHash(e.NarHash); err != nil {
		return PathInfo{}, err
	}
	if p.NarHash.Algo != "sha256" || p.NarSize <= 0 {
		return PathInfo{}, fmt.Errorf("narHash %q, narSize %d: want sha256 and a size", e.NarHash, e.NarSize)
	}
	for _, r := range e.References {
		rp, err := storepath.ParseAbs(dir, r)
		if err != nil {
			return PathInfo{}, fmt.Errorf("reference: %w", err)
		}
		p.References = append(p.References, rp)
	}
	if e.Deriver != nil && *e.Deriver != "" {
		p.Deriver = strings.TrimPrefix(*e.Deriver, dir+"/")
	}
	if e.CA != nil {
		p.CA = *e.CA
	}
	return p, nil
}

// QueryPathInfo asks the local Nix for the paths (and, if closure, all
// they reference).
func QueryPathInfo(ctx context.Context, paths []string, closure bool) ([]PathInfo, error) {
	args := []string{"--extra-experimental-features", "nix-command", "path-info", "--json"}
	if closure {
		args = append(args, "--recursive")
	}
	args = append(args, "--")
	args = append(args, paths...)
	cmd := exec.CommandContext(ctx, "nix", args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("nix path-info: %v: %s", err, strings.TrimSpace(errb.String()))
	}
	return ParsePathInfo(out.Bytes())
}
