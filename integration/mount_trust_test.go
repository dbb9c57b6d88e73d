package integration

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func copyDir(t testing.TB, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "cache")
	if out, err := bashC(t, "cp -a '"+src+"' '"+dst+"'"); err != nil {
		t.Fatalf("copy %s: %v\n%s", src, err, out)
	}
	return dst
}

func statErrno(p string) error {
	_, err := os.Stat(p)
	return err
}

func TestMountSignatures(t *testing.T) {
	c := nixClosure(t)
	cache := "file://" + c.caches["zstd"]
	lib := c.iaPaths[2]
	cases := []struct {
		name    string
		args    []string
		visible bool
	}{
		{"trusted key", []string{"--trusted-public-keys", c.publicKey}, true},
		{"other key", []string{"--trusted-public-keys", c.otherKey}, false},
		{"no keys", []string{"--trusted-public-keys", ""}, false},
		{"two keys, one trusted", []string{"--trusted-public-keys", c.otherKey + " " + c.publicKey}, true},
		{"require-sigs=false", []string{"--trusted-public-keys", c.otherKey, "--require-sigs=false"}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := []string{"NIX_CONF_DIR=" + t.TempDir()} // no host nix.conf keys
			m := mountNarfs(t, cache, env, tc.args...)
			err := statErrno(filepath.Join(m.Dir, lib))
			if tc.visible && err != nil {
				t.Errorf("%s should be visible: %v", lib, err)
			}
			if !tc.visible && !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s should be ENOENT, got %v", lib, err)
			}
			if tc.visible {
				data := readFile(t, filepath.Join(m.Dir, lib, "share/doc/README"))
				if string(data) != "narfs integration\n" {
					t.Errorf("README = %q", data)
				}
			}
		})
	}
}

// TestMountContentAddressed: with no trusted keys at all, genuine
// content-addressed paths are visible (and byte-identical to Nix's
// extraction), input-addressed ones are not, and a forged CA line does not
// smuggle an unsigned input-addressed path in.
func TestMountContentAddressed(t *testing.T) {
	c := nixClosure(t)
	cache := copyDir(t, c.caches["unsigned"])
	lib := c.iaPaths[2]
	// Forge: give lib's narinfo the CA line of a genuine CA path.
	caInfo := readFile(t, filepath.Join(cache, hashOf(c.caPaths[0])+".narinfo"))
	var caLine string
	for _, l := range strings.Split(string(caInfo), "\n") {
		if strings.HasPrefix(l, "CA: ") {
			caLine = l
		}
	}
	if caLine == "" {
		t.Fatalf("no CA line in %s", caInfo)
	}
	libInfo := filepath.Join(cache, hashOf(lib)+".narinfo")
	forged := string(readFile(t, libInfo)) + caLine + "\n"
	if err := os.WriteFile(libInfo, []byte(forged), 0o644); err != nil {
		t.Fatal(err)
	}

	ref := nixExtract(t, "file://"+c.caches["unsigned"], "", c.caPaths)
	m := mountNarfs(t, "file://"+cache, []string{"NIX_CONF_DIR=" + t.TempDir()}, "--trusted-public-keys", "")
	for _, p := range c.caPaths {
		compareTrees(t, filepath.Join(ref, p), filepath.Join(m.Dir, p))
	}
	for _, p := range []string{lib, c.app, c.root} {
		if err := statErrno(filepath.Join(m.Dir, p)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("unsigned input-addressed %s: want ENOENT, got %v", p, err)
		}
	}
	if !m.waitLog("does not match the store path") {
		t.Errorf("the forged CA was not logged as such:\n%s", m.Log())
	}
}

// TestMountCorruptNAR: metadata still comes from the .ls, but reading a
// file of a corrupted NAR is EIO, logged with the path and both hashes,
// and the daemon keeps serving other paths.
func TestMountCorruptNAR(t *testing.T) {
	c := nixClosure(t)
	cache := copyDir(t, c.caches["none"])
	lib := c.iaPaths[2]
	info := string(readFile(t, filepath.Join(cache, hashOf(lib)+".narinfo")))
	narFile := filepath.Join(cache, field(info, "URL"))
	data := readFile(t, narFile)
	// Flip a byte inside README's contents ("narfs integration").
	i := strings.Index(string(data), "narfs integration")
	if i < 0 {
		t.Fatal("README contents not found in the NAR")
	}
	data[i] ^= 0x20
	if err := os.WriteFile(narFile, data, 0o644); err != nil {
		t.Fatal(err)
	}
	m := mountNarfs(t, "file://"+cache, nil, "--trusted-public-keys", c.publicKey)
	readme := filepath.Join(m.Dir, lib, "share/doc/README")
	fi, err := os.Stat(readme)
	if err != nil || fi.Size() != int64(len("narfs integration\n")) {
		t.Fatalf("stat from the listing: %v %v", fi, err)
	}
	for range 2 {
		_, err = os.ReadFile(readme)
		if !errors.Is(err, syscall.EIO) {
			t.Fatalf("reading a corrupt NAR's file: want EIO, got %v", err)
		}
	}
	if !m.waitLog("NAR hash mismatch", lib, field(info, "NarHash")) {
		t.Errorf("log does not say which path and which hashes:\n%s", m.Log())
	}
	// Still serving.
	app := readFile(t, filepath.Join(m.Dir, c.app, "bin/app"))
	if !strings.HasPrefix(string(app), "#!/bin/sh") {
		t.Errorf("other path after the failure: %q", app)
	}
}

func hashOf(base string) string { return base[:32] }

// field returns a narinfo field's value.
func field(info, key string) string {
	for _, l := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(l, key+": "); ok {
			return v
		}
	}
	return ""
}
