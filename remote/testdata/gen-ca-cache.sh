#!/bin/sh
# Regenerates testdata/cache-ca: an unsigned Nix 2.8 binary cache of
# content-addressed paths whose CA is not fixed:r:sha256 (the NarHash), so
# that trust rests on hashing the bytes as they are fetched:
#   flat-sha256   nix-store --add-fixed sha256 FILE        (fixed:sha256)
#   flat-sha1     nix-store --add-fixed sha1 FILE          (fixed:sha1)
#   rec-sha512    nix-store --add-fixed --recursive sha512 (fixed:r:sha512)
#   text          builtins.toFile                          (text:sha256)
# Writes paths.txt: <base name> <CA method>.
set -eu
export NIX_CONFIG='experimental-features = nix-command
build-users-group =
sandbox = false
substituters ='
here=$(cd "$(dirname "$0")" && pwd)
out=$here/cache-ca
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

mkdir -p "$work/flat" "$work/rec/bin"
printf 'flat file contents\n' >"$work/flat/flat-sha256"
printf 'another flat file\n' >"$work/flat/flat-sha1"
printf '#!/bin/sh\necho hi\n' >"$work/rec/bin/hi"
chmod +x "$work/rec/bin/hi"
printf 'data\n' >"$work/rec/data"
ln -s bin/hi "$work/rec/link"
mv "$work/rec" "$work/rec-sha512"

p1=$(nix-store --add-fixed sha256 "$work/flat/flat-sha256")
p2=$(nix-store --add-fixed sha1 "$work/flat/flat-sha1")
p3=$(nix-store --add-fixed --recursive sha512 "$work/rec-sha512")
p4=$(nix-instantiate --read-write-mode --eval -E 'builtins.toFile "text" "text file contents\n"' | tr -d '"')

rm -rf "$out"
nix copy --to "file://$out?compression=none&write-nar-listing=true" "$p1" "$p2" "$p3" "$p4"
: >"$here/cache-ca-paths.txt"
for p in "$p1" "$p2" "$p3" "$p4"; do
	echo "$(basename "$p") $(nix path-info --json "$p" | sed -n 's/.*"ca":"\([a-z:]*\):.*/\1/p')" >>"$here/cache-ca-paths.txt"
done
