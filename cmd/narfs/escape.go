package main

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// Text from a cache (narinfo fields, file names, symlink targets, error
// messages that quote them) is hostile: a raw ESC or newline printed to a
// terminal rewrites what the user sees, or forges a line of output that
// scripts parse ("ok /nix/store/…"). Everything printed goes through
// these.

// escapeLine returns s with every rune that is not printable (control
// characters, including newlines, line separators, bidirectional
// overrides) and every byte that is not UTF-8 written as Go writes it in
// a quoted string (\x1b, \n, \u202e): a line stays one line, and shows
// what the cache sent.
func escapeLine(s string) string {
	if printable(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			b.WriteString(`\x` + strconv.FormatUint(uint64(s[i])|0x100, 16)[1:])
		case strconv.IsPrint(r):
			b.WriteString(s[i : i+n])
		default:
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		}
		i += n
	}
	return b.String()
}

// quoteName returns a name from a cache as it is when it is printable,
// else quoted as a Go string, so that one entry is one line and a name
// that needed quoting is seen to be one.
func quoteName(s string) string {
	if printable(s) {
		return s
	}
	return strconv.Quote(s)
}

func printable(s string) bool {
	for _, r := range s {
		if r == utf8.RuneError || !strconv.IsPrint(r) {
			return false
		}
	}
	return true
}
