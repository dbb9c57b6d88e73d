package storepath

import (
	"errors"
	"testing"
)

func mustParse(t *testing.T, base string) StorePath {
	t.Helper()
	p, err := Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Paths made by Nix 2.8 (nix-store --add, --add-fixed, builtins.toFile,
// nix store make-content-addressed) with their CA and references as shown
// by nix path-info --json.
func TestFromCANix(t *testing.T) {
	tests := []struct {
		what    string
		path    string
		ca      string
		refs    []string
		selfRef bool
	}{
		{"nix-store --add DIR", "hc9qvsgj3w7pkr7jhlp1vwp9v98rc849-d",
			"fixed:r:sha256:1zz33wq21kwaccxn12w6162mvkmgdsbph5xzmg2xl7bfnk0ryprn", nil, false},
		{"nix-store --add-fixed sha256 FILE", "wq8l1rjmyylkh5sqppc54d4vgl9cnp3l-f",
			"fixed:sha256:1xk2hhjr0f2n4adj1h688wlz59xpl86y1r8bd2pjasg8gy16mikb", nil, false},
		{"nix-store --add-fixed --recursive sha1 DIR", "176yp4ffl56l060i6vs7bf3hwwpsm381-d",
			"fixed:r:sha1:ggfyhaip26jbxswz436bkxmdjza065gx", nil, false},
		{"nix-store --add-fixed sha1 FILE", "a7m0vc6f2q3ypyyib9kc4ms2fay0rawa-f",
			"fixed:sha1:pplp5izjnj9j7sbk2hwv7dkbswqf61yj", nil, false},
		{"nix-store --add-fixed --recursive sha512 DIR", "fw86wcmyzlrn9629gzc87ssc720w6abf-d",
			"fixed:r:sha512:0z589ni3p82zf9ph96mcgirwynplbq7gmvddpabi4qpwrx5imsgr2yvyiqqdkigpm99bv47gsvsr4i7k8n5llyxg5wq3238wff8p179", nil, false},
		{"builtins.toFile without references", "a0ar7428vp9gmp87zkv8akmfq0qplnnb-noref.txt",
			"text:sha256:0x84z5jxhhafpx5r0zf36j3aqllgv07x65rklhs7f86n8vnwj5m1", nil, false},
		{"builtins.toFile with references", "k6pk1ilmbzb8db0lbgv14bc28whgmm4b-withref",
			"text:sha256:12rc9dbq6i99ylf2cg04dssw3hxnil4jlnfbsswk65hmvbk78qfm",
			[]string{"hc9qvsgj3w7pkr7jhlp1vwp9v98rc849-d", "a0ar7428vp9gmp87zkv8akmfq0qplnnb-noref.txt"}, false},
		{"make-content-addressed with self reference", "4p0cxrrmgvl31cg014fv6r8pd94958if-selfref-1.0",
			"fixed:r:sha256:1ppqin3hvv8wx3w2pzjp0srhgr8hig5dr8g8piw0bs3nwycn7sa5",
			[]string{"xkgn1dpvpaljjrafrhln01rbbmx6h36a-noref.txt"}, true},
	}
	for _, tt := range tests {
		want := mustParse(t, tt.path)
		var refs []StorePath
		for _, r := range tt.refs {
			refs = append(refs, mustParse(t, r))
		}
		got, err := FromCA(DefaultStoreDir, tt.ca, want.Name, refs, tt.selfRef)
		if err != nil || got != want {
			t.Errorf("%s: FromCA = %v, %v; want %v", tt.what, got, err, want)
		}
		// Dropping the self reference or a reference must change the path.
		if tt.selfRef {
			if got, _ := FromCA(DefaultStoreDir, tt.ca, want.Name, refs, false); got == want {
				t.Errorf("%s: path ignores self reference", tt.what)
			}
		}
		if len(refs) > 0 {
			if got, _ := FromCA(DefaultStoreDir, tt.ca, want.Name, refs[1:], tt.selfRef); got == want {
				t.Errorf("%s: path ignores references", tt.what)
			}
		}
		if got, _ := FromCA("/other/store", tt.ca, want.Name, refs, tt.selfRef); got == want {
			t.Errorf("%s: path ignores store dir", tt.what)
		}
		if got, _ := FromCA(DefaultStoreDir, tt.ca, want.Name+"x", refs, tt.selfRef); got.Hash == want.Hash {
			t.Errorf("%s: path ignores name", tt.what)
		}
	}
}

func TestFromCAEncodings(t *testing.T) {
	// The same CA with its digest in base16 gives the same path.
	h, err := ParseHash("sha256:1zz33wq21kwaccxn12w6162mvkmgdsbph5xzmg2xl7bfnk0ryprn")
	if err != nil {
		t.Fatal(err)
	}
	got, err := FromCA(DefaultStoreDir, "fixed:r:"+h.Base16(), "d", nil, false)
	if err != nil || got.Hash != "hc9qvsgj3w7pkr7jhlp1vwp9v98rc849" {
		t.Fatalf("FromCA base16 = %v, %v", got, err)
	}
}

func TestFromCARejects(t *testing.T) {
	ref := mustParse(t, "hc9qvsgj3w7pkr7jhlp1vwp9v98rc849-d")
	tests := []struct {
		ca      string
		refs    []StorePath
		selfRef bool
	}{
		{"", nil, false},
		{"fixed", nil, false},
		{"fixed:git:sha1:ggfyhaip26jbxswz436bkxmdjza065gx", nil, false},
		{"text:sha1:ggfyhaip26jbxswz436bkxmdjza065gx", nil, false},
		{"text:sha256:12rc9dbq6i99ylf2cg04dssw3hxnil4jlnfbsswk65hmvbk78qfm", nil, true},
		{"fixed:sha256:1xk2hhjr0f2n4adj1h688wlz59xpl86y1r8bd2pjasg8gy16mikb", []StorePath{ref}, false},
		{"fixed:r:sha1:ggfyhaip26jbxswz436bkxmdjza065gx", nil, true},
		{"fixed:r:sha256-Nl+fwbRuHdrFq78XeJdur85dhQmGi2A7Y4rPIDAf4/8=", nil, false},
		{"nar:sha256:1zz33wq21kwaccxn12w6162mvkmgdsbph5xzmg2xl7bfnk0ryprn", nil, false},
	}
	for _, tt := range tests {
		if p, err := FromCA(DefaultStoreDir, tt.ca, "d", tt.refs, tt.selfRef); !errors.Is(err, ErrInvalid) {
			t.Errorf("FromCA(%q, refs=%d, self=%v) = %v, %v; want ErrInvalid", tt.ca, len(tt.refs), tt.selfRef, p, err)
		}
	}
}

func TestParseCARoundTrip(t *testing.T) {
	for _, ca := range []string{
		"text:sha256:12rc9dbq6i99ylf2cg04dssw3hxnil4jlnfbsswk65hmvbk78qfm",
		"fixed:sha1:pplp5izjnj9j7sbk2hwv7dkbswqf61yj",
		"fixed:r:sha256:1zz33wq21kwaccxn12w6162mvkmgdsbph5xzmg2xl7bfnk0ryprn",
	} {
		c, err := ParseCA(ca)
		if err != nil || c.String() != ca {
			t.Errorf("ParseCA(%q) = %+v, %v", ca, c, err)
		}
	}
}
