package narinfo

import (
	"errors"
	"reflect"
	"testing"
)

func FuzzParse(f *testing.F) {
	for _, fx := range nixNarinfos(f) {
		f.Add(fx.data)
	}
	f.Add(readFixture(f, "testdata/cachenixosorg/8raygmhj0mhmq8jxb6bgr4ggcbyyrmf8.narinfo"))
	f.Add([]byte("StorePath: /nix/store/zjapjaaaac5rxx8jbax88asf2gd8fnpw-single-file\nURL: u\nNarHash: sha256-bMeimEo8RFrD7cPjpztRybItsEcSaAQOedexfJoXgYc=\nNarSize: 1\nCA: \nReferences: \nReferences: zjapjaaaac5rxx8jbax88asf2gd8fnpw-single-file\n"))
	pk := fixturePublicKey(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := Parse(data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		again, err := Parse(n.Marshal())
		if err != nil {
			t.Fatalf("Parse(Marshal(n)): %v\n%s", err, n.Marshal())
		}
		if !reflect.DeepEqual(again, n) {
			t.Fatalf("Parse(Marshal(n)) =\n%+v\nwant\n%+v", again, n)
		}
		// Trust checks must not panic on anything Parse accepts.
		_, _ = n.Verify([]PublicKey{pk})
		_ = n.VerifyCA()
	})
}

func FuzzParseCacheInfo(f *testing.F) {
	f.Add([]byte("StoreDir: /nix/store\n"))
	f.Add([]byte("StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 40\n"))
	f.Add([]byte("Priority: x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ci, err := ParseCacheInfo(data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		if ci == nil {
			t.Fatal("nil CacheInfo without error")
		}
	})
}
