package compress

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

func TestParseXZVersion(t *testing.T) {
	for _, c := range []struct {
		out  string
		want int
		ok   bool
	}{
		{"XZ_VERSION=50040012\nLIBLZMA_VERSION=50040012\n", 50040012, true},
		{"XZ_VERSION=50020052\n", 50020052, true},
		{"xz (XZ Utils) 5.4.1\nliblzma 5.4.1\n", 0, false},
		{"XZ_VERSION=5.4.1\n", 0, false},
		{"XZ_VERSION=99999999999999999999\n", 0, false},
		{"", 0, false},
	} {
		got, ok := parseXZVersion(c.out)
		if got != c.want || ok != c.ok {
			t.Errorf("parseXZVersion(%q) = %d, %v; want %d, %v", c.out, got, ok, c.want, c.ok)
		}
	}
}

func FuzzParseXZVersion(f *testing.F) {
	f.Add("XZ_VERSION=50040012\nLIBLZMA_VERSION=50040012\n")
	f.Add("XZ_VERSION=-1")
	f.Fuzz(func(t *testing.T, out string) {
		if v, ok := parseXZVersion(out); !ok && v != 0 {
			t.Errorf("parseXZVersion(%q) = %d, false", out, v)
		}
	})
}

// A tool's complaint reaches the caller: the error names the tool and
// carries its stderr.
func TestToolErrorCarriesStderr(t *testing.T) {
	if _, err := exec.LookPath("xz"); err != nil {
		t.Skip("xz not installed")
	}
	rc, err := startTool(xzTool("xz")(), bytes.NewReader([]byte("not xz at all")))
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	_, err = rc.Read(make([]byte, 100))
	if err == nil || !strings.HasPrefix(err.Error(), "xz: exit status") || !strings.Contains(err.Error(), "xz: (stdin)") {
		t.Errorf("got %v, want xz's exit status and its message", err)
	}
}

func TestCappedBufferKeepsHead(t *testing.T) {
	c := &cappedBuffer{max: 5}
	for _, s := range []string{"abc", "defgh", "ij"} {
		if n, err := c.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", s, n, err)
		}
	}
	if got := c.String(); got != "abcde" {
		t.Errorf("kept %q, want %q", got, "abcde")
	}
}
