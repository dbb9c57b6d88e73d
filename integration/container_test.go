package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestContainerRecipe runs the README's container recipe: a dynamically
// linked program and its C libraries as store paths in a signed cache,
// the cache mounted by narfs, and the mount bound over /nix/store in a
// private mount namespace, where the program runs as root and, with
// --allow-other only, as another user. The store paths are deleted from
// the host's store first, so every byte the program runs on (its
// interpreter and libraries too) comes through narfs.
func TestContainerRecipe(t *testing.T) {
	requireE2E(t)
	for _, tool := range []string{"patchelf", "unshare", "setpriv", "findmnt", "ldd", "nix-build"} {
		if !onPath(tool) {
			missing(t, tool+" is not installed (make deps)")
		}
	}
	const prog = "/bin/ls"
	if !exists(prog) {
		missing(t, prog+" is not installed")
	}
	dir := t.TempDir()
	libs, app := containerPaths(t, dir, prog)
	run := app + "/bin/ls --version"

	// The recipe: a key, a signed cache, the paths deleted locally.
	if _, err := sh(dir, "nix-store", "--generate-binary-cache-key", "narfs-container-1", "sk", "pk"); err != nil {
		t.Fatal(err)
	}
	pk, err := os.ReadFile(filepath.Join(dir, "pk"))
	if err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(dir, "cache")
	to := fmt.Sprintf("file://%s?compression=zstd&write-nar-listing=true&secret-key=%s", cache, filepath.Join(dir, "sk"))
	if err := nixCopyTo(dir, to, app); err != nil {
		t.Fatal(err)
	}
	drv, err := sh(dir, "nix-store", "--query", "--deriver", app)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sh(dir, "nix-store", "--delete", app, drv, libs); err != nil {
		t.Fatal(err)
	}
	if exists(app) || exists(libs) {
		t.Fatalf("%s and %s are still in the host's store", app, libs)
	}
	want, err := bashC(t, prog+" --version")
	if err != nil {
		t.Fatalf("%s --version: %v\n%s", prog, err, want)
	}

	key := strings.TrimSpace(string(pk))
	open := mountNarfs(t, "file://"+cache, nil, "--trusted-public-keys", key, "--allow-other")
	closed := mountNarfs(t, "file://"+cache, nil, "--trusted-public-keys", key)
	const nobody = "setpriv --reuid=65534 --regid=65534 --clear-groups "

	t.Run("root", func(t *testing.T) {
		if out, err := bashC(t, inStore(open.Dir, run)); err != nil || out != want {
			t.Errorf("%s: %v\n%s\nwant:\n%s", run, err, out, want)
		}
	})
	t.Run("private namespace", func(t *testing.T) {
		out, err := bashC(t, inStore(open.Dir, "findmnt -n -o PROPAGATION /nix/store"))
		if err != nil || strings.TrimSpace(out) != "private" {
			t.Errorf("propagation of the bound /nix/store: %v %q, want private", err, out)
		}
	})
	t.Run("libraries from the store", func(t *testing.T) {
		out, err := bashC(t, inStore(open.Dir, "LD_TRACE_LOADED_OBJECTS=1 "+app+"/bin/ls"))
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		n := 0
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) > 2 && f[1] == "=>" {
				n++
				if !strings.HasPrefix(f[2], libs+"/lib/") {
					t.Errorf("%s is loaded from %s, not from %s", f[0], f[2], libs)
				}
			}
		}
		if n == 0 {
			t.Errorf("the loader listed no libraries:\n%s", out)
		}
	})
	t.Run("another user, --allow-other", func(t *testing.T) {
		if out, err := bashC(t, inStore(open.Dir, nobody+run)); err != nil || out != want {
			t.Errorf("as uid 65534: %s: %v\n%s\nwant:\n%s", run, err, out, want)
		}
	})
	t.Run("another user, no --allow-other", func(t *testing.T) {
		if out, err := bashC(t, inStore(closed.Dir, run)); err != nil || out != want {
			t.Errorf("as root: %s: %v\n%s", run, err, out)
		}
		out, err := bashC(t, inStore(closed.Dir, nobody+run))
		if err == nil || !strings.Contains(out, "Permission denied") {
			t.Errorf("as uid 65534 without --allow-other: %v\n%s\nwant EACCES (Permission denied)", err, out)
		}
	})

	// Nothing leaked to the host's namespace.
	if isMounted("/nix/store") {
		t.Errorf("/nix/store is a mount point on the host")
	}
	if exists(app) {
		t.Errorf("%s is visible in the host's store", app)
	}
}

// missing skips t for a tool the machine lacks, except in CI, where
// .ci/deps installs every tool and a skip would hide a broken setup.
func missing(t *testing.T, reason string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatal(reason)
	}
	t.Skip(reason)
}

// inStore is the recipe's command line: cmd in a private mount namespace
// whose /nix/store is the narfs mount at mnt.
func inStore(mnt, cmd string) string {
	return fmt.Sprintf("unshare -m --propagation private bash -c 'mount --bind %s /nix/store && %s'", mnt, cmd)
}

// containerPaths makes two store paths from prog on this machine: libs,
// added with nix-store --add, holding prog's interpreter and every library
// ldd lists, and app, built by a derivation, holding bin/ls: a copy of
// prog whose interpreter and RPATH point into libs, so Nix records the
// reference and nix copy of app copies both.
func containerPaths(t *testing.T, dir, prog string) (libs, app string) {
	t.Helper()
	interp, err := sh(dir, "patchelf", "--print-interpreter", prog)
	if err != nil {
		t.Fatal(err)
	}
	out, err := sh(dir, "ldd", prog)
	if err != nil {
		t.Fatal(err)
	}
	libDir := filepath.Join(dir, "narfs-it-glibc", "lib")
	if err := os.MkdirAll(libDir, 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{filepath.Base(interp): interp}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 2 && f[1] == "=>" && strings.HasPrefix(f[2], "/") {
			files[f[0]] = f[2]
		}
	}
	if len(files) < 2 {
		t.Fatalf("ldd %s listed no libraries:\n%s", prog, out)
	}
	for name, src := range files {
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(libDir, name), data, 0o555); err != nil {
			t.Fatal(err)
		}
	}
	if libs, err = sh(dir, "nix-store", "--add", filepath.Dir(libDir)); err != nil {
		t.Fatal(err)
	}
	expr := fmt.Sprintf(containerNix, libs, prog, filepath.Base(interp))
	if err := os.WriteFile(filepath.Join(dir, "app.nix"), []byte(expr), 0o644); err != nil {
		t.Fatal(err)
	}
	if app, err = sh(dir, "nix-build", "--no-out-link", "app.nix"); err != nil {
		t.Fatal(err)
	}
	return libs, app
}

// containerNix: %[1]s the libs path, %[2]s the program, %[3]s the
// interpreter's file name. --force-rpath writes DT_RPATH, which (unlike
// DT_RUNPATH) also applies to the libraries' own dependencies.
const containerNix = `
let libs = builtins.storePath %[1]q; in
derivation {
  name = "narfs-it-ls"; system = builtins.currentSystem; builder = "/bin/sh"; PATH = "/bin:/usr/bin";
  args = [ "-c" "mkdir -p $out/bin && cp %[2]s $out/bin/ls && chmod 755 $out/bin/ls && patchelf --set-interpreter ${libs}/lib/%[3]s --force-rpath --set-rpath ${libs}/lib $out/bin/ls" ];
}
`
