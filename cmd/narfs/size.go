package main

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/dustin/go-humanize"
)

// byteSize is a flag value in bytes that also takes human units: 100MB and
// 1.5GB (decimal), 512MiB and 10GiB (binary). A bare K, M, G, T, P or E is
// binary, as in Nix (min-free = 1G) and most tools, not decimal as
// humanize.ParseBytes reads it.
type byteSize int64

func (s *byteSize) Set(v string) error {
	n, err := parseByteSize(v)
	if err != nil {
		return err
	}
	*s = byteSize(n)
	return nil
}

// String gives the shortest exact form, so the default shows as 10GiB.
func (s byteSize) String() string {
	n := int64(s)
	if n <= 0 {
		return strconv.FormatInt(n, 10)
	}
	for i, unit := range []string{"EiB", "PiB", "TiB", "GiB", "MiB", "KiB"} {
		if m := int64(1) << (10 * (6 - i)); n%m == 0 {
			return strconv.FormatInt(n/m, 10) + unit
		}
	}
	for i, unit := range []string{"EB", "PB", "TB", "GB", "MB", "kB"} {
		if m := int64(math.Pow10(3 * (6 - i))); n%m == 0 {
			return strconv.FormatInt(n/m, 10) + unit
		}
	}
	return strconv.FormatInt(n, 10)
}

func (s *byteSize) Type() string { return "size" }

func parseByteSize(v string) (int64, error) {
	v = strings.TrimSpace(v)
	if strings.HasPrefix(v, "-") {
		return 0, errors.New("size must be positive")
	}
	if i := len(v) - 1; i > 0 && strings.IndexByte("KMGTPEkmgtpe", v[i]) >= 0 && strings.IndexByte("0123456789. ", v[i-1]) >= 0 {
		v += "i" // "20G" is 20GiB
	}
	n, err := humanize.ParseBytes(v)
	if err != nil {
		return 0, fmt.Errorf("want bytes or a size like 512MiB, 10GiB, 100MB or 1.5GB")
	}
	switch {
	case n == 0:
		return 0, errors.New("size must be positive")
	case n > math.MaxInt64:
		return 0, errors.New("size too large")
	}
	return int64(n), nil
}

// zeroableSize is a byteSize that may also be 0, for limits where 0
// turns the behaviour off.
type zeroableSize byteSize

func (s *zeroableSize) Set(v string) error {
	if strings.TrimSpace(v) == "0" {
		*s = 0
		return nil
	}
	return (*byteSize)(s).Set(v)
}

func (s zeroableSize) String() string { return byteSize(s).String() }

func (s *zeroableSize) Type() string { return "size" }
