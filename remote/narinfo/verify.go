package narinfo

import (
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/narfs/narfs/remote/storepath"
)

// Fingerprint returns the bytes Nix signs:
// "1;<store path>;<sha256:nix32 NarHash>;<NarSize>;<sorted comma-joined
// reference paths>".
func (n *NarInfo) Fingerprint() (string, error) {
	if n.NarSize <= 0 {
		return "", fmt.Errorf("fingerprint of %s: NarSize unknown: %w", n.StorePath, ErrInvalid)
	}
	if n.NarHash.Algo != "sha256" {
		return "", fmt.Errorf("fingerprint of %s: NarHash is not sha256: %w", n.StorePath, ErrInvalid)
	}
	refs := make([]string, len(n.References))
	for i, r := range n.References {
		refs[i] = r.Abs(n.storeDir())
	}
	// Nix holds references in a set: sorted, no duplicates.
	slices.Sort(refs)
	refs = slices.Compact(refs)
	return "1;" + n.StorePath.Abs(n.storeDir()) + ";" + n.NarHash.String() + ";" +
		strconv.FormatInt(n.NarSize, 10) + ";" + strings.Join(refs, ","), nil
}

// Sign returns a Sig value, "<key name>:<base64 signature>", for n.
func (k SecretKey) Sign(n *NarInfo) (string, error) {
	fp, err := n.Fingerprint()
	if err != nil {
		return "", err
	}
	return k.SignFingerprint(fp), nil
}

// SignFingerprint signs any fingerprint (narfs's chunk index has its own,
// which can never be mistaken for a narinfo's).
func (k SecretKey) SignFingerprint(fp string) string {
	return k.Name + ":" + base64.StdEncoding.EncodeToString(ed25519.Sign(k.Key, []byte(fp)))
}

// Verify returns the first trusted key that verifies one of n's
// signatures. Signatures by key names not in keys are skipped; a
// malformed signature under a trusted name simply does not verify. The
// error wraps ErrUntrusted and says why no signature was accepted.
func (n *NarInfo) Verify(keys []PublicKey) (PublicKey, error) {
	if len(n.Sigs) == 0 {
		return PublicKey{}, fmt.Errorf("%s: no signatures: %w", n.StorePath, ErrUntrusted)
	}
	fp, err := n.Fingerprint()
	if err != nil {
		return PublicKey{}, fmt.Errorf("%s: %w: %w", n.StorePath, ErrUntrusted, err)
	}
	k, err := VerifyFingerprint(fp, n.Sigs, keys)
	if err != nil {
		return PublicKey{}, fmt.Errorf("%s: %w", n.StorePath, err)
	}
	return k, nil
}

// VerifyFingerprint returns the first key of keys that verifies one of
// sigs ("<key name>:<base64>") over fp, with Verify's rules.
func VerifyFingerprint(fp string, sigs []string, keys []PublicKey) (PublicKey, error) {
	if len(sigs) == 0 {
		return PublicKey{}, fmt.Errorf("no signatures: %w", ErrUntrusted)
	}
	var failed []string
	for _, s := range sigs {
		name, b64, ok := strings.Cut(s, ":")
		if !ok {
			continue
		}
		for _, k := range keys {
			if k.Name != name {
				continue
			}
			sig, err := base64.StdEncoding.DecodeString(b64)
			if err == nil && len(sig) == ed25519.SignatureSize && len(k.Key) == ed25519.PublicKeySize &&
				ed25519.Verify(k.Key, []byte(fp), sig) {
				return k, nil
			}
			failed = append(failed, name)
		}
	}
	if len(failed) == 0 {
		return PublicKey{}, fmt.Errorf("no signature by a trusted key name: %w", ErrUntrusted)
	}
	return PublicKey{}, fmt.Errorf("signature by key %s does not verify: %w",
		strings.Join(slices.Compact(failed), ", "), ErrUntrusted)
}

// VerifyCA checks the content-addressing exemption: the CA field, name and
// references must recompute the store path. References to the path itself
// count as a self-reference. The error wraps ErrUntrusted.
func (n *NarInfo) VerifyCA() error {
	if n.CA == "" {
		return fmt.Errorf("%s: not content-addressed: %w", n.StorePath, ErrUntrusted)
	}
	var (
		refs    []storepath.StorePath
		selfRef bool
	)
	for _, r := range n.References {
		if r == n.StorePath {
			selfRef = true
		} else {
			refs = append(refs, r)
		}
	}
	p, err := storepath.FromCA(n.storeDir(), n.CA, n.StorePath.Name, refs, selfRef)
	if err != nil {
		return fmt.Errorf("%s: %w: %w", n.StorePath, ErrUntrusted, err)
	}
	if p != n.StorePath {
		return fmt.Errorf("%s: CA %q gives path %s: %w", n.StorePath, n.CA, p, ErrUntrusted)
	}
	return nil
}
