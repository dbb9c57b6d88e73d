package narinfo

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"strings"
)

// PublicKey is a named ed25519 key as listed in trusted-public-keys.
type PublicKey struct {
	Name string
	Key  ed25519.PublicKey
}

// SecretKey is a named ed25519 key as written by
// nix-store --generate-binary-cache-key.
type SecretKey struct {
	Name string
	Key  ed25519.PrivateKey
}

// ParsePublicKey parses "<name>:<base64 of 32 bytes>".
func ParsePublicKey(s string) (PublicKey, error) {
	name, key, err := parseKey(s, ed25519.PublicKeySize)
	if err != nil {
		// Only the name is quoted: a secret key given where a public one
		// belongs must not be printed.
		if name, _, ok := strings.Cut(s, ":"); ok && len(name) <= maxKeyName {
			return PublicKey{}, fmt.Errorf("public key %q: %w", name, err)
		}
		return PublicKey{}, fmt.Errorf("public key: %w", err)
	}
	return PublicKey{Name: name, Key: ed25519.PublicKey(key)}, nil
}

// maxKeyName bounds the key names quoted in errors: a longer one is more
// likely key material than a name.
const maxKeyName = 40

// ParsePublicKeys parses a whitespace-separated list of public keys, the
// syntax of nix.conf's trusted-public-keys.
func ParsePublicKeys(s string) ([]PublicKey, error) {
	var keys []PublicKey
	fields := strings.Fields(s)
	for i, f := range fields {
		k, err := ParsePublicKey(f)
		if err != nil {
			return nil, fmt.Errorf("key %d of %d: %w", i+1, len(fields), err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// String renders the key as "<name>:<base64>".
func (k PublicKey) String() string {
	return k.Name + ":" + base64.StdEncoding.EncodeToString(k.Key)
}

// ParseSecretKey parses a Nix secret key file: "<name>:<base64 of 64
// bytes>" (libsodium's seed ‖ public key, the layout of
// ed25519.PrivateKey), surrounding whitespace ignored. Its errors never
// contain any of s: a malformed file may be all key material (no name,
// or the key where the name should be).
func ParseSecretKey(s string) (SecretKey, error) {
	name, key, err := parseKey(strings.TrimSpace(s), ed25519.PrivateKeySize)
	if err != nil {
		return SecretKey{}, fmt.Errorf("secret key: %w", err)
	}
	sk := ed25519.PrivateKey(key)
	// Go signs with the public half stored in the key, so a key whose halves
	// disagree would produce signatures nobody can verify.
	if derived := ed25519.NewKeyFromSeed(sk.Seed()); !bytes.Equal(derived, sk) {
		return SecretKey{}, fmt.Errorf("secret key: public half does not match the seed: %w", ErrInvalid)
	}
	return SecretKey{Name: name, Key: sk}, nil
}

// Public returns the matching public key.
func (k SecretKey) Public() PublicKey {
	return PublicKey{Name: k.Name, Key: k.Key.Public().(ed25519.PublicKey)}
}

// String renders the key in Nix's secret key file format.
func (k SecretKey) String() string {
	return k.Name + ":" + base64.StdEncoding.EncodeToString(k.Key)
}

// parseKey splits "<name>:<base64>". Its errors quote none of s, which
// may be a secret key.
func parseKey(s string, size int) (string, []byte, error) {
	name, b64, ok := strings.Cut(s, ":")
	if !ok || name == "" {
		return "", nil, fmt.Errorf("want <name>:<base64>: %w", ErrInvalid)
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(key) != size {
		return "", nil, fmt.Errorf("want <name>:<base64 of %d bytes>: %w", size, ErrInvalid)
	}
	return name, key, nil
}
