package main

import "testing"

func TestEscapeLine(t *testing.T) {
	for in, want := range map[string]string{
		"ok /nix/store/x":            "ok /nix/store/x",
		"caf\u00e9 \u2603":           "caf\u00e9 \u2603",
		"a\x1b[2Jb":                  `a\x1b[2Jb`,
		"one\nok /nix/store/forged":  `one\nok /nix/store/forged`,
		"cr\rbell\a del\x7f":         `cr\rbell\a del\x7f`,
		"bidi \u202egpj.exe":         `bidi \u202egpj.exe`,
		"c1 \u009b31m":               `c1 \u009b31m`,
		"bad \xff\xfe utf8":          `bad \xff\xfe utf8`,
		"tab\tnul\x00":               `tab\tnul\x00`,
		"literal \ufffd replacement": "literal \ufffd replacement",
	} {
		if got := escapeLine(in); got != want {
			t.Errorf("escapeLine(%q) = %q, want %q", in, got, want)
		}
	}
	if got := quoteName("a\nb"); got != `"a\nb"` {
		t.Errorf("quoteName = %s", got)
	}
	if got := quoteName("plain name"); got != "plain name" {
		t.Errorf("quoteName = %s", got)
	}
}
