package storepath

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"
)

// Vectors printed by Nix 2.8 (nix-hash --base32) next to sha256sum & co.
var nix32Vectors = []struct{ hex, nix32 string }{
	// sha256 of the NAR of an empty regular file.
	{"77ac62e2629d8e45f624589c0c8bf99e24b3a722349bf1e79bc186008534e246", "0ip26j2h11n1kgkz36rl4akv694yz65hr72q4kv4b3lxcbi65b3p"},
	// md5 and sha1 of the empty string.
	{"d41d8cd98f00b204e9800998ecf8427e", "3y8bwfr609h3lh9ch0izcqq7fl"},
	{"da39a3ee5e6b4b0d3255bfef95601890afd80709", "143xibwh31h9bvxzalr0sjvbbvpa6ffs"},
	{"", ""},
	{"00", "00"},
	{"ff", "7z"},
}

func TestNix32Vectors(t *testing.T) {
	for _, v := range nix32Vectors {
		raw, err := hex.DecodeString(v.hex)
		if err != nil {
			t.Fatal(err)
		}
		if got := EncodeNix32(raw); got != v.nix32 {
			t.Errorf("EncodeNix32(%s) = %q, want %q", v.hex, got, v.nix32)
		}
		got, err := DecodeNix32(v.nix32)
		if err != nil || !bytes.Equal(got, raw) {
			t.Errorf("DecodeNix32(%q) = %x, %v; want %s", v.nix32, got, err, v.hex)
		}
	}
}

func TestDecodeNix32Rejects(t *testing.T) {
	for _, s := range []string{
		"0ip26j2h11n1kgkz36rl4akv694yz65hr72q4kv4b3lxcbi65b3", // 51 chars: no byte count
		"0",  // 1 char
		"e0", // e is not in the alphabet
		"0O", // upper case
		"80", // top digit 8 sets bit 8 of a 1-byte value
		"zz", // overflow
		"0t", // t is not in the alphabet
		"0\x00",
		"sip26j2h11n1kgkz36rl4akv694yz65hr72q4kv4b3lxcbi65b3p", // 52 chars with bit 256 set
	} {
		if b, err := DecodeNix32(s); !errors.Is(err, ErrInvalid) {
			t.Errorf("DecodeNix32(%q) = %x, %v; want ErrInvalid", s, b, err)
		}
	}
}

func FuzzDecodeNix32(f *testing.F) {
	for _, v := range nix32Vectors {
		f.Add(v.nix32)
	}
	f.Add("7z")
	f.Add("zz")
	f.Fuzz(func(t *testing.T, s string) {
		b, err := DecodeNix32(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		if got := EncodeNix32(b); got != s {
			t.Fatalf("round trip %q -> %x -> %q", s, b, got)
		}
	})
}
