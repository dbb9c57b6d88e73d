package storepath

import (
	"errors"
	"strings"
	"testing"
)

func TestParseHashEncodings(t *testing.T) {
	// One sha256 (a NAR hash Nix printed as SRI and nix32) in every form.
	const (
		b16  = "77ac62e2629d8e45f624589c0c8bf99e24b3a722349bf1e79bc186008534e246"
		n32  = "0ip26j2h11n1kgkz36rl4akv694yz65hr72q4kv4b3lxcbi65b3p"
		b64  = "d6xi4mKdjkX2JFicDIv5niSzpyI0m/Hnm8GGAIU04kY="
		want = "sha256:" + n32
	)
	for _, s := range []string{
		"sha256:" + b16,
		"sha256:" + strings.ToUpper(b16),
		"sha256:" + n32,
		"sha256:" + b64,
		"sha256-" + b64,
	} {
		h, err := ParseHash(s)
		if err != nil {
			t.Errorf("ParseHash(%q): %v", s, err)
			continue
		}
		if h.String() != want || h.SRI() != "sha256-"+b64 || h.Base16() != "sha256:"+b16 {
			t.Errorf("ParseHash(%q) = %s / %s", s, h, h.SRI())
		}
	}
	a, _ := ParseHash("sha256:" + b16)
	b, _ := ParseHash("sha256-" + b64)
	if !a.Equal(b) {
		t.Error("equal hashes compare unequal")
	}
}

func TestParseHashAlgos(t *testing.T) {
	for _, s := range []string{
		"md5:3y8bwfr609h3lh9ch0izcqq7fl",
		"md5:d41d8cd98f00b204e9800998ecf8427e",
		"sha1:143xibwh31h9bvxzalr0sjvbbvpa6ffs",
		"sha1:da39a3ee5e6b4b0d3255bfef95601890afd80709",
		"sha512:0zdl9zrg8r3i9c1g90lgg9ip5ijzv3yhz91i0zzn3r8ap9ws784gkp9dk9j3aglhgf1amqb0pj21mh7h1nxcl18akqvvf7ggqsy30yg",
	} {
		h, err := ParseHash(s)
		if err != nil {
			t.Errorf("ParseHash(%q): %v", s, err)
			continue
		}
		if r, err := ParseHash(h.SRI()); err != nil || !r.Equal(h) {
			t.Errorf("SRI round trip of %q: %v", s, err)
		}
		if r, err := ParseHash(h.String()); err != nil || !r.Equal(h) {
			t.Errorf("nix32 round trip of %q: %v", s, err)
		}
	}
}

func TestParseHashRejects(t *testing.T) {
	for _, s := range []string{
		"",
		"0ip26j2h11n1kgkz36rl4akv694yz65hr72q4kv4b3lxcbi65b3p",
		"sha257:0ip26j2h11n1kgkz36rl4akv694yz65hr72q4kv4b3lxcbi65b3p",
		"sha256:0ip26j2h11n1kgkz36rl4akv694yz65hr72q4kv4b3lxcbi65b3",
		"sha256:0ip26j2h11n1kgkz36rl4akv694yz65hr72q4kv4b3lxcbi65b3e",
		"sha256:77ac62e2629d8e45f624589c0c8bf99e24b3a722349bf1e79bc186008534e24g",
		"sha256:d6xi4mKdjkX2JFicDIv5niSzpyI0m/Hnm8GGAIU04kY",                      // no padding
		"sha256-77ac62e2629d8e45f624589c0c8bf99e24b3a722349bf1e79bc186008534e246", // SRI is base64 only
		"md5:0ip26j2h11n1kgkz36rl4akv694yz65hr72q4kv4b3lxcbi65b3p",
	} {
		if h, err := ParseHash(s); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseHash(%q) = %v, %v; want ErrInvalid", s, h, err)
		}
	}
}

func FuzzParseHash(f *testing.F) {
	f.Add("sha256:0ip26j2h11n1kgkz36rl4akv694yz65hr72q4kv4b3lxcbi65b3p")
	f.Add("sha256-d6xi4mKdjkX2JFicDIv5niSzpyI0m/Hnm8GGAIU04kY=")
	f.Add("sha256:77ac62e2629d8e45f624589c0c8bf99e24b3a722349bf1e79bc186008534e246")
	f.Add("md5:3y8bwfr609h3lh9ch0izcqq7fl")
	f.Fuzz(func(t *testing.T, s string) {
		h, err := ParseHash(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		if len(h.Digest) != HashSize(h.Algo) {
			t.Fatalf("ParseHash(%q): %d-byte %s digest", s, len(h.Digest), h.Algo)
		}
		for _, r := range []string{h.String(), h.SRI(), h.Base16()} {
			if g, err := ParseHash(r); err != nil || !g.Equal(h) {
				t.Fatalf("re-parse of %q: %v, %v", r, g, err)
			}
		}
	})
}
