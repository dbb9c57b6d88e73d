package narinfo

import (
	"bytes"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/narfs/narfs/remote/storepath"
)

func TestParseFixtures(t *testing.T) {
	for _, f := range nixNarinfos(t) {
		n := mustParse(t, f.data)
		hash := strings.TrimSuffix(filepath.Base(f.path), ".narinfo")
		if n.StorePath.Hash != hash || n.StoreDir != storepath.DefaultStoreDir {
			t.Errorf("%s: StorePath %s in %s", f.path, n.StorePath, n.StoreDir)
		}
		if n.URL == "" || n.NarSize <= 0 || n.FileHash == nil || n.FileSize <= 0 || n.Compression == "" {
			t.Errorf("%s: missing fields: %+v", f.path, n)
		}
		if n.Compression == "none" && !n.FileHash.Equal(n.NarHash) {
			t.Errorf("%s: uncompressed NAR with FileHash != NarHash", f.path)
		}
		if got := n.Marshal(); !bytes.Equal(got, f.data) {
			t.Errorf("%s: Marshal differs from Nix:\n%s\nwant:\n%s", f.path, got, f.data)
		}
	}
}

// A hand-written narinfo in the forms third parties use: SRI and base16
// hashes, no Compression or FileHash, doubled spaces, unknown keys.
func TestParseFields(t *testing.T) {
	const in = "StorePath: /nix/store/ymydngcp0syr2bpvigprvim861rmkrvc-narfs-test-app\n" +
		"URL: nar/x.nar?hash=ymydngcp0syr2bpvigprvim861rmkrvc\n" +
		"FileSize: 264\n" +
		"FileHash: sha256:6cc7a2984a3c445ac3edc3e3a73b51c9b22db0471268040e79d7b17c9a178187\n" +
		"NarHash: sha256-bMeimEo8RFrD7cPjpztRybItsEcSaAQOedexfJoXgYc=\n" +
		"NarSize: 832\n" +
		"References:  jq3hgqjn0hn0wmnld235n75qdiv5y6yk-narfs-test-lib  ymydngcp0syr2bpvigprvim861rmkrvc-narfs-test-app \n" +
		"Deriver: unknown-deriver\n" +
		"System: x86_64-linux\n" +
		"Unknown-Key: whatever: with colons\n" +
		"Sig: b:c\n" +
		"Sig: a:d\n"
	n := mustParse(t, []byte(in))
	h, _ := storepath.ParseHash("sha256:11w12yd7rcfpg4708s0j8yq2vcn9a4xsgqy3xp1mli1w9aca5ivc")
	want := &NarInfo{
		StorePath: storepath.StorePath{Hash: "ymydngcp0syr2bpvigprvim861rmkrvc", Name: "narfs-test-app"},
		StoreDir:  "/nix/store",
		URL:       "nar/x.nar?hash=ymydngcp0syr2bpvigprvim861rmkrvc",
		FileHash:  &h,
		FileSize:  264,
		NarHash:   h,
		NarSize:   832,
		References: []storepath.StorePath{
			{Hash: "jq3hgqjn0hn0wmnld235n75qdiv5y6yk", Name: "narfs-test-lib"},
			{Hash: "ymydngcp0syr2bpvigprvim861rmkrvc", Name: "narfs-test-app"},
		},
		System: "x86_64-linux",
		Sigs:   []string{"b:c", "a:d"},
		// Kept, in order, so a rewrite (narfs index) does not drop them.
		Extra: []Field{{"Unknown-Key", "whatever: with colons"}},
	}
	if !reflect.DeepEqual(n, want) {
		t.Fatalf("Parse =\n%+v\nwant\n%+v", n, want)
	}
	if n.EffectiveCompression() != "bzip2" {
		t.Errorf("EffectiveCompression = %q, want bzip2", n.EffectiveCompression())
	}
	const marshaled = "StorePath: /nix/store/ymydngcp0syr2bpvigprvim861rmkrvc-narfs-test-app\n" +
		"URL: nar/x.nar?hash=ymydngcp0syr2bpvigprvim861rmkrvc\n" +
		"FileHash: sha256:11w12yd7rcfpg4708s0j8yq2vcn9a4xsgqy3xp1mli1w9aca5ivc\n" +
		"FileSize: 264\n" +
		"NarHash: sha256:11w12yd7rcfpg4708s0j8yq2vcn9a4xsgqy3xp1mli1w9aca5ivc\n" +
		"NarSize: 832\n" +
		"References: jq3hgqjn0hn0wmnld235n75qdiv5y6yk-narfs-test-lib ymydngcp0syr2bpvigprvim861rmkrvc-narfs-test-app\n" +
		"System: x86_64-linux\n" +
		"Sig: b:c\n" +
		"Sig: a:d\n" +
		"Unknown-Key: whatever: with colons\n"
	if got := string(n.Marshal()); got != marshaled {
		t.Errorf("Marshal =\n%s\nwant\n%s", got, marshaled)
	}
}

func TestParseRejects(t *testing.T) {
	const good = "StorePath: /nix/store/zjapjaaaac5rxx8jbax88asf2gd8fnpw-single-file\n" +
		"URL: nar/a.nar\n" +
		"NarHash: sha256:10fb05whp0qvq61mcmws7irh38mqbffppx3siqdnvfj6aarj45xi\n" +
		"NarSize: 136\n"
	mustParse(t, []byte(good))
	mustParse(t, []byte(good+"References: \nReferences: zjapjaaaac5rxx8jbax88asf2gd8fnpw-single-file\n"))
	mustParse(t, []byte(good+"CA: \nCA: fixed:r:sha256:10fb05whp0qvq61mcmws7irh38mqbffppx3siqdnvfj6aarj45xi\n"))
	drop := func(key string) string {
		var out []string
		for _, l := range strings.SplitAfter(good, "\n") {
			if !strings.HasPrefix(l, key+":") {
				out = append(out, l)
			}
		}
		return strings.Join(out, "")
	}
	tests := map[string]string{
		"empty":                "",
		"no final newline":     strings.TrimSuffix(good, "\n"),
		"no StorePath":         drop("StorePath"),
		"no URL":               drop("URL"),
		"empty URL":            drop("URL") + "URL: \n",
		"no NarHash":           drop("NarHash"),
		"no NarSize":           drop("NarSize"),
		"NarSize 0":            drop("NarSize") + "NarSize: 0\n",
		"negative NarSize":     drop("NarSize") + "NarSize: -136\n",
		"huge NarSize":         drop("NarSize") + "NarSize: 9223372036854775808\n",
		"NarSize with space":   drop("NarSize") + "NarSize:  136\n",
		"bad FileSize":         good + "FileSize: 12k\n",
		"md5 NarHash":          drop("NarHash") + "NarHash: md5:d41d8cd98f00b204e9800998ecf8427e\n",
		"bad NarHash":          drop("NarHash") + "NarHash: sha256:10fb05whp0qvq61mcmws7irh38mqbffppx3siqdnvfj6aarj45xe\n",
		"bad FileHash":         good + "FileHash: sha256:zz\n",
		"relative StorePath":   drop("StorePath") + "StorePath: zjapjaaaac5rxx8jbax88asf2gd8fnpw-single-file\n",
		"unclean store dir":    drop("StorePath") + "StorePath: /nix//store/zjapjaaaac5rxx8jbax88asf2gd8fnpw-single-file\n",
		"bad StorePath":        drop("StorePath") + "StorePath: /nix/store/zjapjaaaac5rxx8jbax88asf2gd8fnpw-\n",
		"bad reference":        good + "References: zjapjaaaac5rxx8jbax88asf2gd8fnpw-single-file nope\n",
		"repeated References":  good + "References: zjapjaaaac5rxx8jbax88asf2gd8fnpw-single-file\nReferences: \n",
		"repeated CA":          good + "CA: text:sha256:10fb05whp0qvq61mcmws7irh38mqbffppx3siqdnvfj6aarj45xi\nCA: text:sha256:10fb05whp0qvq61mcmws7irh38mqbffppx3siqdnvfj6aarj45xi\n",
		"bad Deriver":          good + "Deriver: foo.drv\n",
		"no space after colon": good + "Sig:x:y\n",
		"line without colon":   good + "garbage\n",
		"blank line":           good + "\n",
		"too big":              good + "X: " + strings.Repeat("x", MaxSize) + "\n",
	}
	for name, in := range tests {
		if n, err := Parse([]byte(in)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Parse = %+v, %v; want ErrInvalid", name, n, err)
		}
	}
}
