package chunkindex

import (
	"encoding/hex"
	"strconv"
)

func formatInt(v int64) string { return strconv.FormatInt(v, 10) }
func hexs(h [32]byte) string   { return hex.EncodeToString(h[:]) }
