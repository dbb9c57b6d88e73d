package narinfo

import "testing"

func BenchmarkParse(b *testing.B) {
	data := readFixture(b, "testdata/cachenixosorg/8raygmhj0mhmq8jxb6bgr4ggcbyyrmf8.narinfo")
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := Parse(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	n := mustParse(b, readFixture(b, "testdata/cachenixosorg/8raygmhj0mhmq8jxb6bgr4ggcbyyrmf8.narinfo"))
	keys, err := ParsePublicKeys("cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=")
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := n.Verify(keys); err != nil {
			b.Fatal(err)
		}
	}
}
