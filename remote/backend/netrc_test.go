package backend

import (
	"strings"
	"testing"
)

const sampleNetrc = `# comment line
machine cache.example.org
  login alice
  password "not-quoted-in-netrc"

machine Other.Example login bob password pw2 account acct
macdef init
cd /pub
binary

machine cache.example.org login dup password dup
default login anon password anonpw
`

func TestParseNetrc(t *testing.T) {
	n, err := parseNetrc(strings.NewReader(sampleNetrc))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ host, login, pw string }{
		{"cache.example.org", "alice", `"not-quoted-in-netrc"`}, // first entry wins
		{"other.example", "bob", "pw2"},                         // host match ignores case
		{"elsewhere", "anon", "anonpw"},                         // default
	} {
		e, ok := n.lookup(tc.host)
		if !ok || e.login != tc.login || e.password != tc.pw {
			t.Errorf("lookup(%s) = %+v, %v; want %s/%s", tc.host, e, ok, tc.login, tc.pw)
		}
	}
	var nilNetrc *netrcFile
	if _, ok := nilNetrc.lookup("x"); ok {
		t.Error("nil netrc found credentials")
	}
}

func TestParseNetrcErrors(t *testing.T) {
	for _, in := range []string{
		"machine",
		"machine h login",
		"login x password y",
		"machine h login u password p extra-token-secret",
	} {
		_, err := parseNetrc(strings.NewReader(in))
		if err == nil {
			t.Errorf("parseNetrc(%q) succeeded", in)
		} else if strings.Contains(err.Error(), "secret") {
			t.Errorf("parseNetrc(%q) error %q quotes file content", in, err)
		}
	}
}

func FuzzParseNetrc(f *testing.F) {
	f.Add(sampleNetrc)
	f.Add("machine 127.0.0.1 login u password p\n")
	f.Add("default login a password b\nmacdef x\n\nmachine m")
	f.Fuzz(func(t *testing.T, in string) {
		n, err := parseNetrc(strings.NewReader(in))
		if err != nil {
			return
		}
		n.lookup("127.0.0.1")
	})
}
