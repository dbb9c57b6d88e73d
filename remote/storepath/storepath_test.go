package storepath

import (
	"errors"
	"strings"
	"testing"
)

const goodHash = "hc9qvsgj3w7pkr7jhlp1vwp9v98rc849"

func TestParse(t *testing.T) {
	tests := []struct {
		base string
		ok   bool
	}{
		{goodHash + "-d", true},
		{goodHash + "-hello-2.12.1", true},
		{goodHash + "-" + "A-Za+z0-9._?=", true},
		{goodHash + "-.dotfile", true},
		{goodHash + "-..x", true},
		{goodHash + "-" + strings.Repeat("a", 211), true},
		{goodHash + "-" + strings.Repeat("a", 212), false},
		{goodHash + "-", false},
		{goodHash, false},
		{goodHash + "_d", false},
		{goodHash[:31] + "-d", false},
		{"e" + goodHash[1:] + "-d", false},
		{"o" + goodHash[1:] + "-d", false},
		{"u" + goodHash[1:] + "-d", false},
		{"t" + goodHash[1:] + "-d", false},
		{"H" + goodHash[1:] + "-d", false},
		{goodHash + "-.", false},
		{goodHash + "-..", false},
		{goodHash + "-.-foo", false},
		{goodHash + "-..-foo", false},
		{goodHash + "-a/b", false},
		{goodHash + "-a b", false},
		{goodHash + "-a~b", false},
		{goodHash + "-caf\xc3\xa9", false},
		{"", false},
	}
	for _, tt := range tests {
		p, err := Parse(tt.base)
		if tt.ok {
			if err != nil {
				t.Errorf("Parse(%q): %v", tt.base, err)
			} else if p.String() != tt.base || p.Hash != tt.base[:32] {
				t.Errorf("Parse(%q) = %+v", tt.base, p)
			}
			continue
		}
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("Parse(%q) = %+v, %v; want ErrInvalid", tt.base, p, err)
		}
	}
}

func TestParseAbs(t *testing.T) {
	p, err := ParseAbs(DefaultStoreDir, "/nix/store/"+goodHash+"-d")
	if err != nil || p.Name != "d" || p.Abs(DefaultStoreDir) != "/nix/store/"+goodHash+"-d" {
		t.Fatalf("ParseAbs = %+v, %v", p, err)
	}
	for _, s := range []string{"/nix/store2/" + goodHash + "-d", "/nix/store/" + goodHash + "-d/bin", "nix/store/" + goodHash + "-d"} {
		if _, err := ParseAbs(DefaultStoreDir, s); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseAbs(%q): %v, want ErrInvalid", s, err)
		}
	}
}

func TestValidHashPart(t *testing.T) {
	if !ValidHashPart(goodHash) || ValidHashPart(goodHash[:31]) || ValidHashPart(goodHash+"0") || ValidHashPart("t"+goodHash[1:]) {
		t.Fatal("ValidHashPart disagrees with the store path rules")
	}
}

func FuzzParseStorePath(f *testing.F) {
	f.Add(goodHash + "-hello-2.12.1")
	f.Add(goodHash + "-..-foo")
	f.Add(goodHash + "-" + strings.Repeat("a", 212))
	f.Fuzz(func(t *testing.T, s string) {
		p, err := Parse(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		if p.String() != s || !ValidHashPart(p.Hash) || !ValidName(p.Name) {
			t.Fatalf("Parse(%q) = %+v", s, p)
		}
		if q, err := ParseAbs("/nix/store", p.Abs("/nix/store")); err != nil || q != p {
			t.Fatalf("ParseAbs(Abs) = %+v, %v", q, err)
		}
	})
}
