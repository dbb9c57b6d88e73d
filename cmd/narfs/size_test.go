package main

import (
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func TestByteSizeSet(t *testing.T) {
	for in, want := range map[string]int64{
		"1":                   1,
		"1073741824":          1 << 30,
		"100MB":               100e6,
		"100mb":               100e6,
		"10GiB":               10 << 30,
		"512MiB":              512 << 20,
		"1.5GB":               1.5e9,
		"20G":                 20 << 30,
		"20g":                 20 << 30,
		"20 G":                20 << 30,
		"1.5G":                3 << 29,
		"64K":                 64 << 10,
		"2T":                  2 << 40,
		"100 kB":              100e3,
		" 10GiB ":             10 << 30,
		"9223372036854775807": 1<<63 - 1,
		"7EiB":                7 << 60,
	} {
		var s byteSize
		if err := s.Set(in); err != nil || int64(s) != want {
			t.Errorf("Set(%q) = %d, %v; want %d", in, s, err, want)
		}
	}
}

func TestByteSizeRejects(t *testing.T) {
	for _, in := range []string{
		"", "0", "0GiB", "0.1", "-1", "-5GiB", "abc", "10XB", "G", "1e3",
		"9223372036854775808", "8EiB", "16E", "99999999999999999999", "1e30GB",
	} {
		var s byteSize = 42
		if err := s.Set(in); err == nil {
			t.Errorf("Set(%q) = %d, want an error", in, s)
		} else if s != 42 {
			t.Errorf("Set(%q) failed but changed the value to %d", in, s)
		}
	}
}

func TestByteSizeString(t *testing.T) {
	for n, want := range map[int64]string{
		10 << 30: "10GiB", 512 << 20: "512MiB", 100e6: "100MB", 1500: "1500", 1000: "1kB", 1024: "1KiB", 1: "1",
	} {
		if got := byteSize(n).String(); got != want {
			t.Errorf("String(%d) = %q, want %q", n, got, want)
		}
		var back byteSize
		if err := back.Set(want); err != nil || int64(back) != n {
			t.Errorf("Set(String(%d)) = %d, %v", n, back, err)
		}
	}
}

// The flag as the command line sees it: a one-line error naming the flag,
// and the default shown as 10GiB in --help.
func TestCacheSizeFlag(t *testing.T) {
	newFlags := func() (*pflag.FlagSet, *int64) {
		fs := pflag.NewFlagSet("narfs", pflag.ContinueOnError)
		fs.SetOutput(new(strings.Builder))
		size := int64(10 << 30)
		fs.Var((*byteSize)(&size), "cache-size", "cache size")
		return fs, &size
	}
	fs, size := newFlags()
	if err := fs.Parse([]string{"--cache-size=100MB"}); err != nil || *size != 100e6 {
		t.Errorf("--cache-size=100MB: %d, %v", *size, err)
	}
	for _, bad := range []string{"0", "-1", "8EiB", "lots"} {
		fs, _ := newFlags()
		err := fs.Parse([]string{"--cache-size=" + bad})
		if err == nil || !strings.Contains(err.Error(), "--cache-size") || strings.Contains(err.Error(), "\n") {
			t.Errorf("--cache-size=%s: err = %v, want one line naming the flag", bad, err)
		}
	}
	fs, _ = newFlags()
	if usage := fs.FlagUsages(); !strings.Contains(usage, "(default 10GiB)") {
		t.Errorf("usage does not show the default as 10GiB:\n%s", usage)
	}
}

func TestZeroableSize(t *testing.T) {
	var s zeroableSize
	for v, want := range map[string]int64{"0": 0, " 0 ": 0, "32MiB": 32 << 20, "1K": 1024} {
		if err := s.Set(v); err != nil || int64(s) != want {
			t.Errorf("Set(%q) = %d, %v; want %d", v, s, err, want)
		}
	}
	for _, v := range []string{"-1", "x", ""} {
		if err := s.Set(v); err == nil {
			t.Errorf("Set(%q) accepted", v)
		}
	}
}
