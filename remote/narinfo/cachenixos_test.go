package narinfo

import (
	"bytes"
	"path/filepath"
	"testing"
)

// cache.nixos.org narinfos (as served; public data) checked against the
// real cache.nixos.org-1 key: one input-addressed with a self-reference,
// one text-addressed .drv with references.
func TestCacheNixosOrg(t *testing.T) {
	keys, err := ParsePublicKeys("cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=")
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob("testdata/cachenixosorg/*.narinfo")
	if len(files) != 2 {
		t.Fatalf("found %d narinfos", len(files))
	}
	for _, f := range files {
		data := readFixture(t, f)
		n := mustParse(t, data)
		if !bytes.Equal(n.Marshal(), data) {
			t.Errorf("%s: Marshal differs:\n%s", f, n.Marshal())
		}
		if k, err := n.Verify(keys); err != nil || k.Name != "cache.nixos.org-1" {
			t.Errorf("%s: Verify = %v, %v", f, k, err)
		}
		if n.CA != "" {
			if err := n.VerifyCA(); err != nil {
				t.Errorf("%s: VerifyCA: %v", f, err)
			}
		}
	}
}
