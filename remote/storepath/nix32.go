package storepath

import "fmt"

// nix32Alphabet is Nix's base-32 alphabet in value order; it omits e, o, u
// and t so that hashes never spell words.
const nix32Alphabet = "0123456789abcdfghijklmnpqrsvwxyz"

// nix32Value maps a byte to its digit value, or -1 when it is not a nix32
// character.
var nix32Value = func() [256]int8 {
	var t [256]int8
	for i := range t {
		t[i] = -1
	}
	for i := 0; i < len(nix32Alphabet); i++ {
		t[nix32Alphabet[i]] = int8(i)
	}
	return t
}()

// EncodedLen returns the nix32 length of n bytes.
func EncodedLen(n int) int { return (n*8 + 4) / 5 }

// EncodeNix32 renders b in Nix's base-32 encoding. Nix emits the digits of
// the least significant bits last, so the text is "reversed" compared with
// RFC 4648 base32.
func EncodeNix32(b []byte) string {
	l := EncodedLen(len(b))
	out := make([]byte, l)
	for n := l - 1; n >= 0; n-- {
		bit := n * 5
		i, j := bit/8, uint(bit%8)
		c := b[i] >> j
		if i+1 < len(b) {
			c |= b[i+1] << (8 - j)
		}
		out[l-1-n] = nix32Alphabet[c&31]
	}
	return string(out)
}

// DecodeNix32 inverts EncodeNix32. It rejects characters outside the
// alphabet, lengths that no byte count encodes to, and set bits that would
// overflow the last byte (which would otherwise give two spellings of one
// digest).
func DecodeNix32(s string) ([]byte, error) {
	n := len(s) * 5 / 8
	if EncodedLen(n) != len(s) {
		return nil, fmt.Errorf("nix32 %q: length %d encodes no whole number of bytes: %w", s, len(s), ErrInvalid)
	}
	out := make([]byte, n)
	for k := 0; k < len(s); k++ {
		d := nix32Value[s[len(s)-1-k]]
		if d < 0 {
			return nil, fmt.Errorf("nix32 %q: bad character %q: %w", s, s[len(s)-1-k], ErrInvalid)
		}
		bit := k * 5
		i, j := bit/8, uint(bit%8)
		out[i] |= byte(d) << j
		// bit < 8n always holds, so only the carry can fall off the end.
		if carry := byte(d) >> (8 - j); i+1 < n {
			out[i+1] |= carry
		} else if carry != 0 {
			return nil, fmt.Errorf("nix32 %q: excess bits: %w", s, ErrInvalid)
		}
	}
	return out, nil
}
