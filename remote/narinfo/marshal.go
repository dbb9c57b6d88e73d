package narinfo

import (
	"strconv"
	"strings"
)

// Marshal writes n in Nix's field order and format. A narinfo Nix wrote
// comes back byte for byte; optional fields that are empty are left out,
// except References, which Nix always writes (with a trailing space when
// there are none).
func (n *NarInfo) Marshal() []byte {
	var b strings.Builder
	line := func(k, v string) {
		b.WriteString(k)
		b.WriteString(": ")
		b.WriteString(v)
		b.WriteByte('\n')
	}
	line("StorePath", n.StorePath.Abs(n.storeDir()))
	line("URL", n.URL)
	if n.Compression != "" {
		line("Compression", n.Compression)
	}
	if n.FileHash != nil {
		line("FileHash", n.FileHash.String())
	}
	if n.FileSize != 0 {
		line("FileSize", strconv.FormatInt(n.FileSize, 10))
	}
	line("NarHash", n.NarHash.String())
	line("NarSize", strconv.FormatInt(n.NarSize, 10))
	refs := make([]string, len(n.References))
	for i, r := range n.References {
		refs[i] = r.String()
	}
	line("References", strings.Join(refs, " "))
	if n.Deriver != "" {
		line("Deriver", n.Deriver)
	}
	if n.System != "" {
		line("System", n.System)
	}
	for _, s := range n.Sigs {
		line("Sig", s)
	}
	if n.CA != "" {
		line("CA", n.CA)
	}
	for _, f := range n.Extra {
		line(f.Key, f.Value)
	}
	return []byte(b.String())
}
