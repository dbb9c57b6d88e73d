#!/usr/bin/env bash
# mktree.sh DIR — deterministically create the edge-case store trees used by
# the nar tests and by gen-fixtures.sh:
#
#   DIR/tree         directory with every edge case below, including big.txt (> 10 MB)
#   DIR/tree-small   the same tree without big.txt (small enough for dumps, br, fuzz seeds)
#   DIR/single-file  a lone regular file
#   DIR/single-exec  a lone executable file
#   DIR/single-link  a lone symlink (target "some-target", dangling)
#
# Modes are set explicitly so the result does not depend on the umask; NAR
# encodes only the owner-x bit, which is what the odd modes below exercise.
set -euo pipefail
export LC_ALL=C

out=${1:?usage: mktree.sh DIR}
mkdir -p "$out"
for n in tree tree-small single-file single-exec single-link; do
  if [ -e "$out/$n" ] || [ -L "$out/$n" ]; then
    chmod -R u+w "$out/$n" 2>/dev/null || true
    rm -rf "$out/$n"
  fi
done

small() { # small DIR: every edge case except the big file
  local d=$1
  mkdir -p "$d"
  printf '#!/bin/sh\necho hello from narfs\n' > "$d/hello.sh"; chmod 0755 "$d/hello.sh"
  printf 'plain text\n' > "$d/plain.txt"; chmod 0644 "$d/plain.txt"
  # group/other x but not owner x: NOT executable in a NAR.
  printf 'not owner-executable\n' > "$d/group-exec"; chmod 0654 "$d/group-exec"
  # owner x only: executable.
  printf 'owner-executable only\n' > "$d/owner-exec"; chmod 0744 "$d/owner-exec"
  : > "$d/empty-file"; chmod 0644 "$d/empty-file"
  : > "$d/empty-exec"; chmod 0755 "$d/empty-exec"
  printf 'x' > "$d/one-byte"
  printf '12345678' > "$d/eight-bytes"          # length already 8-aligned: no padding
  printf '123456789' > "$d/nine-bytes"          # 7 bytes of padding
  printf 'a\000b\000\377\376binary\n' > "$d/binary.bin"
  printf 'no trailing newline' > "$d/no-newline"
  ln -s plain.txt "$d/link-to-file"
  ln -s does-not-exist "$d/dangling"
  ln -s /etc/hostname "$d/abs-link"
  ln -s d1/d2 "$d/link-to-dir"
  ln -s ../tree/plain.txt "$d/dotdot-link"
  mkdir -p "$d/d1/d2/d3/d4/d5"
  printf 'deep\n' > "$d/d1/d2/d3/d4/d5/deep.txt"
  printf 'level 1\n' > "$d/d1/l1.txt"
  ln -s ../../../plain.txt "$d/d1/d2/d3/up3"
  mkdir -p "$d/empty-dir"
  mkdir -p "$d/d1/d2/empty-nested"
  printf 'unicode\n' > "$d/ünïcödé-名前.txt"
  mkdir -p "$d/ディレクトリ"
  printf 'in unicode dir\n' > "$d/ディレクトリ/ファイル"
  # Byte-order traps: upper case before lower case, and "a" is a directory so a
  # sort on full paths ("a/x" vs "a-b") would differ from per-entry byte order.
  printf 'A\n' > "$d/A"
  printf 'B\n' > "$d/B"
  mkdir -p "$d/a"
  printf 'inside a\n' > "$d/a/x"
  printf 'a-b\n' > "$d/a-b"
  printf 'a.b\n' > "$d/a.b"
  printf 'a_b\n' > "$d/a_b"
  printf 'ab\n' > "$d/ab"
  printf 'spaces and odd chars\n' > "$d/with space =+?.txt"
  printf 'dash\n' > "$d/-leading-dash"
  printf 'dots\n' > "$d/...three-dots"
  printf 'tilde\n' > "$d/~tilde#hash%percent"
  # A name of 255 bytes (the usual NAME_MAX).
  printf 'long name\n' > "$d/$(printf 'n%.0s' $(seq 1 255))"
  find "$d" -type d -exec chmod 0755 {} +
}

small "$out/tree-small"
small "$out/tree"
# big.txt: 2700 blocks of 4096 bytes (11059200 bytes > 10 MiB). Each block
# starts with its number, so reads at a wrong offset are caught, while the
# rest repeats so every compressor shrinks it to almost nothing.
awk 'BEGIN {
  filler = ""
  for (j = 1; j < 256; j++) filler = filler sprintf("narfs big file line %03d\n", j % 1000)
  # header 16 bytes + 255*25 = 6375 > 4096: cut to fit exactly.
  for (i = 0; i < 2700; i++) {
    h = sprintf("block %08d\n", i)
    printf "%s%s", h, substr(filler, 1, 4096 - length(h))
  }
}' > "$out/tree/big.txt"
chmod 0644 "$out/tree/big.txt"

printf 'a single regular file\n' > "$out/single-file"; chmod 0644 "$out/single-file"
printf '#!/bin/sh\necho single exec\n' > "$out/single-exec"; chmod 0755 "$out/single-exec"
ln -s some-target "$out/single-link"
