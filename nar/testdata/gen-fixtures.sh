#!/usr/bin/env bash
# gen-fixtures.sh — regenerate the golden Nix 2.8 fixtures in nar/testdata/nix/.
#
# Makes (everything under nar/testdata/nix/ is deleted and rebuilt):
#   cache-<c>/        `nix copy` file:// binary caches with write-nar-listing=true, signed with
#                     keys/narfs-test-1.sk, for c in: xz, xz-parallel (xz, parallel-compression=true,
#                     compression-level=0 so the 11 MB NAR gets several xz blocks), zstd, bzip2,
#                     none, gzip, br (br: every path except the big "tree").
#   cache-unsigned/   zstd, no secret-key: the content-addressed paths plus narfs-test-lib.
#   dumps/<basename>.nar          `nix-store --dump` of every path except the big tree.
#   dumps/<basename>.nar.sha256   "<hex sha256> <size>" of `nix-store --dump`, every path.
#   paths.txt         one line per store path: "<basename> <kind>", kind "ca" (nix-store --add of
#                     a mktree.sh tree; the name after the hash is the mktree.sh name) or "ia"
#                     (input-addressed derivation output built by nix-build).
#   public-key.txt    the public key string, same as keys/narfs-test-1.pk.
# Keys in nar/testdata/keys/ are generated once and then reused (test-only keys).
# Re-running reproduces every byte except the gzip caches (libarchive puts a timestamp in the
# gzip header), so commit those only when the paths changed.
#
# Needs real Nix 2.8 (nix-bin) and runs as root against the local /nix/store.
set -euo pipefail
export LC_ALL=C
export NIX_CONFIG=$'experimental-features = nix-command\nbuild-users-group =\nsandbox = false\nsubstituters ='

here=$(cd "$(dirname "$0")" && pwd)
out=$here/nix
keys=$here/keys
tmp=$(mktemp -d)
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT

mkdir -p "$keys"
if [ ! -s "$keys/narfs-test-1.sk" ]; then
  nix-store --generate-binary-cache-key narfs-test-1 "$keys/narfs-test-1.sk" "$keys/narfs-test-1.pk"
fi
sk=$keys/narfs-test-1.sk

chmod -R u+w "$out" 2>/dev/null || true
rm -rf "$out"
mkdir -p "$out/dumps"

bash "$here/mktree.sh" "$tmp/trees"
declare -A ca
for n in tree tree-small single-file single-exec single-link; do
  ca[$n]=$(nix-store --add "$tmp/trees/$n")
done

cat > "$tmp/closure.nix" <<'NIX'
let
  mk = name: script: derivation {
    inherit name;
    system = builtins.currentSystem;
    builder = "/bin/sh";
    PATH = "/bin:/usr/bin";
    args = [ "-c" script ];
  };
in rec {
  lib = mk "narfs-test-lib" ''
    mkdir -p $out/lib $out/share/doc
    printf 'greet() { echo "hello from narfs-test-lib"; }\n' > $out/lib/greet.sh
    printf 'narfs test library\n' > $out/share/doc/README
  '';
  app = mk "narfs-test-app" ''
    mkdir -p $out/bin
    printf '#!/bin/sh\n. ${lib}/lib/greet.sh\ngreet\n' > $out/bin/hello
    chmod +x $out/bin/hello
    ln -s ${lib}/share/doc $out/doc
  '';
}
NIX
lib=$(nix-build --no-out-link "$tmp/closure.nix" -A lib)
app=$(nix-build --no-out-link "$tmp/closure.nix" -A app)

all=("${ca[tree]}" "${ca[tree-small]}" "${ca[single-file]}" "${ca[single-exec]}" "${ca[single-link]}" "$lib" "$app")
small=("${ca[tree-small]}" "${ca[single-file]}" "${ca[single-exec]}" "${ca[single-link]}" "$lib" "$app")

{
  echo "# <store path basename> <kind: ca = nix-store --add of a mktree.sh tree, ia = nix-build output>"
  for n in tree tree-small single-file single-exec single-link; do echo "$(basename "${ca[$n]}") ca"; done
  echo "$(basename "$lib") ia"
  echo "$(basename "$app") ia"
} > "$out/paths.txt"
cp "$keys/narfs-test-1.pk" "$out/public-key.txt"

for p in "${all[@]}"; do
  b=$(basename "$p")
  nix-store --dump "$p" > "$tmp/dump.nar"
  echo "$(sha256sum < "$tmp/dump.nar" | cut -d' ' -f1) $(stat -c %s "$tmp/dump.nar")" > "$out/dumps/$b.nar.sha256"
  if [ "$p" != "${ca[tree]}" ]; then cp "$tmp/dump.nar" "$out/dumps/$b.nar"; fi
done

copy() { # copy NAME QUERY PATH...
  local name=$1 query=$2; shift 2
  nix copy --to "file://$out/cache-$name?$query" "$@"
}
signed="write-nar-listing=true&secret-key=$sk"
copy xz          "compression=xz&$signed" "${all[@]}"
copy xz-parallel "compression=xz&parallel-compression=true&compression-level=0&$signed" "${all[@]}"
copy zstd        "compression=zstd&$signed" "${all[@]}"
copy bzip2       "compression=bzip2&$signed" "${all[@]}"
copy none        "compression=none&$signed" "${all[@]}"
copy gzip        "compression=gzip&$signed" "${all[@]}"
copy br          "compression=br&$signed" "${small[@]}"
copy unsigned    "compression=zstd&write-nar-listing=true" \
  "${ca[tree]}" "${ca[tree-small]}" "${ca[single-file]}" "${ca[single-exec]}" "${ca[single-link]}" "$lib"

du -sh "$out"
