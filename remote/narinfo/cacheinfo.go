package narinfo

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// CacheInfo is a binary cache's nix-cache-info.
type CacheInfo struct {
	StoreDir      string // "" when the cache does not say
	WantMassQuery bool
	Priority      int // lower is preferred; 0 when absent
	// IndexAliases: the cache keeps narfs chunk indexes under names of
	// the hash part (NarfsIndexAliases: 1; remote/chunkindex).
	IndexAliases bool
}

// ParseCacheInfo decodes nix-cache-info the way Nix does: lines without ':'
// are skipped, the key is everything before the first ':', the value is
// trimmed, and unknown keys are ignored. A Priority that is not an integer
// is an error (Nix throws from std::stoi).
func ParseCacheInfo(data []byte) (*CacheInfo, error) {
	if len(data) > MaxSize {
		return nil, fmt.Errorf("nix-cache-info: %d bytes, limit %d: %w", len(data), MaxSize, ErrInvalid)
	}
	var ci CacheInfo
	for l := range bytes.SplitSeq(data, []byte("\n")) {
		key, value, ok := strings.Cut(string(l), ":")
		if !ok {
			continue
		}
		value = strings.TrimSpace(value)
		switch key {
		case "StoreDir":
			ci.StoreDir = value
		case "WantMassQuery":
			ci.WantMassQuery = value == "1"
		case "NarfsIndexAliases":
			ci.IndexAliases = value == "1"
		case "Priority":
			p, err := strconv.Atoi(value)
			if err != nil {
				return nil, fmt.Errorf("nix-cache-info: Priority %q: %w", value, ErrInvalid)
			}
			ci.Priority = p
		}
	}
	return &ci, nil
}
