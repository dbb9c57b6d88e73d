package narinfo

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/narfs/narfs/remote/storepath"
)

func signed(t *testing.T) []*NarInfo {
	t.Helper()
	var out []*NarInfo
	for _, f := range nixNarinfos(t) {
		n := mustParse(t, f.data)
		if len(n.Sigs) > 0 {
			out = append(out, n)
		}
	}
	if len(out) < 10 {
		t.Fatalf("only %d signed fixtures", len(out))
	}
	return out
}

func TestVerifyNixSignatures(t *testing.T) {
	pk := fixturePublicKey(t)
	sk := fixtureSecretKey(t)
	if sk.Public().String() != pk.String() {
		t.Fatalf("secret key's public half %s, want %s", sk.Public(), pk)
	}
	other := PublicKey{Name: "cache.nixos.org-1", Key: make(ed25519.PublicKey, 32)}
	for _, n := range signed(t) {
		got, err := n.Verify([]PublicKey{other, pk})
		if err != nil || got.Name != pk.Name {
			t.Errorf("%s: Verify = %v, %v", n.StorePath, got, err)
		}
		// ed25519 is deterministic, so our signature must equal Nix's.
		if sig, err := sk.Sign(n); err != nil || sig != n.Sigs[0] {
			t.Errorf("%s: Sign = %q, %v; Nix wrote %q", n.StorePath, sig, err, n.Sigs[0])
		}
	}
}

// flipByte changes one character of s to another valid character of the
// same kind, so the field still parses but means something else.
func flipNix32(s string, i int) string {
	b := []byte(s)
	if b[i] == '0' {
		b[i] = '1'
	} else {
		b[i] = '0'
	}
	return string(b)
}

func TestVerifyRejectsTampering(t *testing.T) {
	keys := []PublicKey{fixturePublicKey(t)}
	for _, orig := range signed(t) {
		fresh := func() *NarInfo { return mustParse(t, orig.Marshal()) }
		tamper := map[string]func(n *NarInfo){
			"store path hash": func(n *NarInfo) { n.StorePath.Hash = flipNix32(n.StorePath.Hash, 5) },
			"store path name": func(n *NarInfo) { n.StorePath.Name += "x" },
			"store dir":       func(n *NarInfo) { n.StoreDir = "/nix/storf" },
			"NarHash":         func(n *NarInfo) { n.NarHash.Digest[7] ^= 1 },
			"NarSize":         func(n *NarInfo) { n.NarSize++ },
			"added reference": func(n *NarInfo) {
				n.References = append(n.References, storepath.StorePath{Hash: "jq3hgqjn0hn0wmnld235n75qdiv5y6yk", Name: "x"})
			},
			"signature": func(n *NarInfo) {
				name, b64, _ := strings.Cut(n.Sigs[0], ":")
				sig, _ := base64.StdEncoding.DecodeString(b64)
				sig[10] ^= 0x20
				n.Sigs[0] = name + ":" + base64.StdEncoding.EncodeToString(sig)
			},
			"truncated signature": func(n *NarInfo) { n.Sigs[0] = n.Sigs[0][:len(n.Sigs[0])-8] + "====" },
			"garbage signature":   func(n *NarInfo) { n.Sigs[0] = keys[0].Name + ":!!!" },
		}
		for i := range orig.References {
			tamper["reference "+orig.References[i].String()] = func(n *NarInfo) {
				n.References[i].Hash = flipNix32(n.References[i].Hash, 0)
			}
			tamper["dropped reference "+orig.References[i].String()] = func(n *NarInfo) {
				n.References = append(n.References[:i:i], n.References[i+1:]...)
			}
		}
		for what, f := range tamper {
			n := fresh()
			f(n)
			// Through the text form too, as a cache would serve it.
			for _, m := range []*NarInfo{n, mustParse(t, n.Marshal())} {
				if k, err := m.Verify(keys); !errors.Is(err, ErrUntrusted) {
					t.Errorf("%s: tampered %s: Verify = %v, %v; want ErrUntrusted", orig.StorePath, what, k, err)
				}
			}
		}
	}
}

func TestVerifyUntrusted(t *testing.T) {
	n := signed(t)[0]
	pk := fixturePublicKey(t)
	otherKey, _, _ := ed25519.GenerateKey(nil)
	tests := []struct {
		what string
		keys []PublicKey
		sigs []string
		why  string
	}{
		{"no trusted keys", nil, n.Sigs, "no signature by a trusted key name"},
		{"other key name", []PublicKey{{Name: "other", Key: pk.Key}}, n.Sigs, "no signature by a trusted key name"},
		{"same name, different key", []PublicKey{{Name: pk.Name, Key: otherKey}}, n.Sigs, "does not verify"},
		{"unsigned", []PublicKey{pk}, nil, "no signatures"},
		{"signature without name", []PublicKey{pk}, []string{strings.TrimPrefix(n.Sigs[0], pk.Name+":")}, "no signature by a trusted key name"},
	}
	for _, tt := range tests {
		m := *n
		m.Sigs = tt.sigs
		_, err := m.Verify(tt.keys)
		if !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), tt.why) {
			t.Errorf("%s: Verify error %v; want ErrUntrusted saying %q", tt.what, err, tt.why)
		}
	}
	// An unknown key's signature is skipped; a later trusted one still counts.
	m := *n
	m.Sigs = []string{"other:AAAA", pk.Name + ":!!", n.Sigs[0]}
	if _, err := m.Verify([]PublicKey{pk}); err != nil {
		t.Errorf("Verify with extra signatures: %v", err)
	}
}

func TestVerifyUnsignedFixtures(t *testing.T) {
	keys := []PublicKey{fixturePublicKey(t)}
	files := nixNarinfos(t)
	count := 0
	for _, f := range files {
		if !strings.Contains(f.path, "cache-unsigned") {
			continue
		}
		count++
		if _, err := mustParse(t, f.data).Verify(keys); !errors.Is(err, ErrUntrusted) {
			t.Errorf("%s: Verify = %v, want ErrUntrusted", f.path, err)
		}
	}
	if count == 0 {
		t.Fatal("no cache-unsigned fixtures")
	}
}

func TestFingerprint(t *testing.T) {
	// A self-reference is part of the fingerprint; references are sorted.
	n := mustParse(t, []byte("StorePath: /nix/store/4p0cxrrmgvl31cg014fv6r8pd94958if-selfref-1.0\n"+
		"URL: nar/x.nar\n"+
		"NarHash: sha256:07w0a1ahb44wfb3zklvzlban1n3ldzc39fb227s5x8dhrdbfidld\n"+
		"NarSize: 576\n"+
		"References: xkgn1dpvpaljjrafrhln01rbbmx6h36a-noref.txt 4p0cxrrmgvl31cg014fv6r8pd94958if-selfref-1.0\n"))
	const want = "1;/nix/store/4p0cxrrmgvl31cg014fv6r8pd94958if-selfref-1.0;" +
		"sha256:07w0a1ahb44wfb3zklvzlban1n3ldzc39fb227s5x8dhrdbfidld;576;" +
		"/nix/store/4p0cxrrmgvl31cg014fv6r8pd94958if-selfref-1.0,/nix/store/xkgn1dpvpaljjrafrhln01rbbmx6h36a-noref.txt"
	if fp, err := n.Fingerprint(); err != nil || fp != want {
		t.Errorf("Fingerprint = %q, %v\nwant %q", fp, err, want)
	}
	// The out-of-order references still verify against Nix's signature.
	n.Sigs = []string{"narfs-test-1:kDbrAYfycpaOBPutkegcA5PcO7+bO82htWikADR4GRmxzQZp9SrWUjdL3wbsJL2BDuN8S/svLSPj6yByiQlMAw=="}
	if _, err := n.Verify([]PublicKey{fixturePublicKey(t)}); err != nil {
		t.Errorf("Verify: %v", err)
	}
	n.NarSize = 0
	if _, err := n.Fingerprint(); !errors.Is(err, ErrInvalid) {
		t.Errorf("Fingerprint with NarSize 0: %v", err)
	}
}

func TestVerifyCA(t *testing.T) {
	ok := 0
	for _, f := range nixNarinfos(t) {
		n := mustParse(t, f.data)
		err := n.VerifyCA()
		if n.CA == "" {
			if !errors.Is(err, ErrUntrusted) {
				t.Errorf("%s: input-addressed path passes VerifyCA: %v", f.path, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: VerifyCA: %v", f.path, err)
			continue
		}
		ok++
		// A changed CA hash, name or reference set must break the match.
		forged := []func(m *NarInfo){
			func(m *NarInfo) {
				c, _ := storepath.ParseCA(m.CA)
				c.Hash.Digest[0] ^= 1
				m.CA = c.String()
			},
			func(m *NarInfo) { m.StorePath.Name += "x" },
			func(m *NarInfo) {
				m.References = append(m.References, storepath.StorePath{Hash: "jq3hgqjn0hn0wmnld235n75qdiv5y6yk", Name: "narfs-test-lib"})
			},
		}
		for i, forge := range forged {
			m := mustParse(t, f.data)
			forge(m)
			if err := m.VerifyCA(); !errors.Is(err, ErrUntrusted) {
				t.Errorf("%s: forgery %d passes VerifyCA: %v", f.path, i, err)
			}
		}
	}
	if ok < 10 {
		t.Errorf("only %d CA fixtures verified", ok)
	}
}

// A CA line copied from a genuine CA narinfo onto an input-addressed one.
func TestVerifyCACopiedLine(t *testing.T) {
	ca := mustParse(t, readFixture(t, "testdata/nix28/4p0cxrrmgvl31cg014fv6r8pd94958if.narinfo"))
	for _, path := range []string{
		"testdata/nix28/3s218y7kyhv86pf1r7rn15z4wkj5ag4f.narinfo",
		sharedFixtures + "/cache-unsigned/jq3hgqjn0hn0wmnld235n75qdiv5y6yk.narinfo",
	} {
		n := mustParse(t, readFixture(t, path))
		n.CA = ca.CA
		if err := n.VerifyCA(); !errors.Is(err, ErrUntrusted) {
			t.Errorf("%s with copied CA: VerifyCA = %v", path, err)
		}
	}
}

// A NarInfo built in code (as `narfs push` will) signs and verifies with
// StoreDir left empty, meaning /nix/store.
func TestSignHandBuilt(t *testing.T) {
	sk := fixtureSecretKey(t)
	orig := mustParse(t, readFixture(t, "testdata/nix28/3s218y7kyhv86pf1r7rn15z4wkj5ag4f.narinfo"))
	n := &NarInfo{
		StorePath:  orig.StorePath,
		URL:        orig.URL,
		NarHash:    orig.NarHash,
		NarSize:    orig.NarSize,
		References: orig.References,
	}
	sig, err := sk.Sign(n)
	if err != nil || sig != orig.Sigs[0] {
		t.Fatalf("Sign = %q, %v; want Nix's %q", sig, err, orig.Sigs[0])
	}
	n.Sigs = []string{sig}
	back := mustParse(t, n.Marshal())
	if _, err := back.Verify([]PublicKey{sk.Public()}); err != nil {
		t.Fatalf("Verify after Marshal: %v", err)
	}
}
