package narinfo

import (
	"errors"
	"strings"
	"testing"
)

func TestParseKeys(t *testing.T) {
	pk := fixturePublicKey(t)
	if pk.Name != "narfs-test-1" || len(pk.Key) != 32 {
		t.Fatalf("ParsePublicKey = %+v", pk)
	}
	sk, err := ParseSecretKey("\n " + readKeyFile(t, "../../nar/testdata/keys/narfs-test-1.sk") + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if sk.Public().String() != pk.String() {
		t.Errorf("Public() = %s, want %s", sk.Public(), pk)
	}
	if got, _ := ParseSecretKey(sk.String()); got.Public().String() != pk.String() {
		t.Errorf("secret key does not round trip")
	}

	keys, err := ParsePublicKeys("cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=\n\t" + pk.String() + "  ")
	if err != nil || len(keys) != 2 || keys[0].Name != "cache.nixos.org-1" || keys[1].String() != pk.String() {
		t.Errorf("ParsePublicKeys = %v, %v", keys, err)
	}
	if keys, err := ParsePublicKeys("  "); err != nil || len(keys) != 0 {
		t.Errorf("ParsePublicKeys(blank) = %v, %v", keys, err)
	}
}

func TestParseKeysRejects(t *testing.T) {
	pk := fixturePublicKey(t).String()
	sk := readKeyFile(t, "../../nar/testdata/keys/narfs-test-1.sk")
	for _, s := range []string{"", "name", ":" + strings.SplitN(pk, ":", 2)[1], "n:!!!", "n:AAAA", sk} {
		if k, err := ParsePublicKey(s); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParsePublicKey(%q) = %v, %v; want ErrInvalid", s, k, err)
		}
	}
	if _, err := ParsePublicKeys(pk + " junk"); !errors.Is(err, ErrInvalid) {
		t.Errorf("ParsePublicKeys with junk: %v", err)
	}
	// A secret key whose public half was swapped for another key's.
	name, b64, _ := strings.Cut(sk, ":")
	mixed := name + ":" + b64[:43] + "A" + b64[44:]
	for _, s := range []string{"", pk, mixed, "x:" + strings.Repeat("A", 88)} {
		if k, err := ParseSecretKey(s); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseSecretKey(%q) = %v, %v; want ErrInvalid", s, k.Name, err)
		}
	}
}

// TestKeyErrorsHideKeys: no error of key parsing contains key material,
// whatever the malformed input: a secret key without its name, with the
// key where the name goes, of the wrong length, given as a public key.
func TestKeyErrorsHideKeys(t *testing.T) {
	sk := readKeyFile(t, "../../nar/testdata/keys/narfs-test-1.sk")
	_, b64, _ := strings.Cut(sk, ":")
	leaks := func(err error) bool {
		if err == nil {
			return false
		}
		msg := err.Error()
		for i := 0; i+12 <= len(b64); i++ {
			if strings.Contains(msg, b64[i:i+12]) {
				return true
			}
		}
		return false
	}
	for _, s := range []string{b64, b64 + ":", b64 + ":x", "n:" + b64[:80], "n:" + b64 + "AAAA", " " + b64 + "\n", "n:" + b64[:43] + "A" + b64[44:]} {
		if _, err := ParseSecretKey(s); err == nil || leaks(err) {
			t.Errorf("ParseSecretKey of a malformed key: error %v", err)
		}
	}
	for _, s := range []string{sk, b64, b64 + ":AAAA"} {
		if _, err := ParsePublicKeys("cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY= " + s); err == nil || leaks(err) {
			t.Errorf("ParsePublicKeys of a secret key: error %v", err)
		}
	}
}
