#!/usr/bin/env bash
# make demo: build a small real binary cache with Nix, mount it with narfs,
# look around, unmount. Everything lives in a temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."
NARFS=$PWD/bin/narfs
export NIX_CONFIG=$'experimental-features = nix-command\nbuild-users-group =\nsandbox = false\nsubstituters ='

work=$(mktemp -d /tmp/narfs-demo.XXXXXX)
pid=
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"; wait "$pid" || true
  fi
  mountpoint -q "$work/store" 2>/dev/null && fusermount3 -u "$work/store"
  rm -rf "$work"
}
trap cleanup EXIT
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1. Real Nix builds two store paths (hello-demo references greeting-demo)"
cat > "$work/demo.nix" <<'NIX'
let
  greeting = derivation {
    name = "greeting-demo"; system = builtins.currentSystem; builder = "/bin/sh";
    PATH = "/bin:/usr/bin";
    args = [ "-c" "mkdir -p $out/share/doc; echo 'Hello from a lazily mounted Nix store!' > $out/share/greeting; echo 'narfs demo' > $out/share/doc/README; ln -s share/greeting $out/greeting" ];
  };
in derivation {
  name = "hello-demo"; system = builtins.currentSystem; builder = "/bin/sh";
  PATH = "/bin:/usr/bin";
  args = [ "-c" "mkdir -p $out/bin; printf '#!/bin/sh\\ncat ${greeting}/share/greeting\\n' > $out/bin/hello; chmod +x $out/bin/hello" ];
}
NIX
hello=$(nix-build --no-out-link "$work/demo.nix")
echo "$hello"

step "2. Copy its closure to a signed file:// binary cache (zstd, with .ls listings)"
nix-store --generate-binary-cache-key narfs-demo-1 "$work/sk" "$work/pk"
nix copy --to "file://$work/cache?compression=zstd&write-nar-listing=true&secret-key=$work/sk" "$hello"
ls "$work/cache"

step "3. narfs mount file://$work/cache $work/store"
mkdir "$work/store"
"$NARFS" mount --cache-dir "$work/narfs-cache" --trusted-public-keys "$(cat "$work/pk")" \
  "file://$work/cache" "$work/store" 2> "$work/narfs.log" &
pid=$!
for _ in $(seq 100); do mountpoint -q "$work/store" && break; sleep 0.1; done
mountpoint -q "$work/store" || { cat "$work/narfs.log"; exit 1; }
grep -m1 mounted "$work/narfs.log"

base=$(basename "$hello")
step "4. The root lists what the cache holds"
ls -l "$work/store"
step "5. Metadata comes from the .ls listing: no NAR fetched yet"
ls -lR "$work/store/$base"
ls -l "$work/store/$base/../"*greeting-demo*
step "6. Run the program from the mount (its NAR is fetched and verified on first open)"
bash -c "'$work/store/$base/bin/hello'"
step "7. Read through a symlink on the mount (the second NAR, on demand)"
readlink "$work/store/"*greeting-demo/greeting
cat "$work/store/"*greeting-demo/greeting
step "8. The same core without a mount"
"$NARFS" info --trusted-public-keys "$(cat "$work/pk")" "file://$work/cache" "$base"

step "9. Unmount (SIGTERM)"
kill -TERM "$pid"; wait "$pid"; pid=
tail -n 2 "$work/narfs.log"
mountpoint -q "$work/store" && { echo "still mounted!"; exit 1; }
echo "unmounted cleanly"
