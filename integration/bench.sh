#!/usr/bin/env bash
# `make bench`: the decoder benchmarks of nar/compress, then TestBenchReport
# (narfs vs real Nix and the native disk), assembled into integration/BENCHMARKS.md.
# Run as root from the repository (make bench builds bin/narfs first).
# NARFS_BENCH_MD=path writes the report elsewhere (default integration/BENCHMARKS.md).
# NARFS_BENCH_LINKS=loopback,s3-region limits the links cold figures are
# taken on (default loopback, s3-region and wan: integration/linkshape).
# NARFS_BENCH_ONLY=stock runs only measures 15, 17 and 18 (stock caches).
# NARFS_BENCH_ONLY=indexed runs only measures 10–14 (per-file reads of a
# cache written by narfs push); NARFS_BENCH_ONLY=closure runs only 1, 3
# and 16 (a cold closure), of the caches NARFS_BENCH_COMPRESSIONS=zstd,...
# names; NARFS_BENCH_ONLY=builds runs only 19 and 20 (builds on narfs: Nix
# 2.26 local-overlay and Nix 2.8 register against substitute-then-build);
# NARFS_BENCH_ONLY=daemon runs only 21 (memory of the daemon socket with
# 32 clients querying 10,000 paths);
# NARFS_BENCH_RUNS=N sets the runs per figure.
# NARFS_BENCH_NARSERVE=path/to/nar-serve (or nar-serve on PATH) adds
# numtide/nar-serve as measure 11's reference.
set -euo pipefail
cd "$(dirname "$0")/.."

out_md=${NARFS_BENCH_MD:-integration/BENCHMARKS.md}
work=$(mktemp -d /tmp/narfs-bench-run.XXXXXX)
# The Go test stops its own mounts and servers (t.Cleanup); should it be
# killed, this trap lazily unmounts the narfs mounts left below $work (its
# TMPDIR; the orphaned daemons exit when unmounted) and removes scratch.
cleanup() {
  local mp
  while read -r mp; do
    fusermount3 -u -z "$mp" 2>/dev/null || true
  done < <(awk -v w="$work/" '$3 == "fuse.narfs" && index($2, w) == 1 {print $2}' /proc/mounts)
  rm -rf "$work" /var/tmp/narfs-bench/run-*
}
trap cleanup EXIT

start=$(date +%s)
[ -x bin/narfs ] || go build -o bin/narfs ./cmd/narfs

only=${NARFS_BENCH_ONLY:-}
: > "$work/decode.txt"
if [ -z "$only" ]; then
  echo "== decoder benchmarks (nar/compress, 5 runs each)" >&2
  # One op of 100 MiB per run; the C tools decode the same files. Five
  # separate passes rather than -count 5, so ours and the C tool alternate
  # and a burst of load from elsewhere on the machine hits both.
  for pass in 1 2 3 4 5; do
    go test -run '^$' -bench '^BenchmarkDecode$/^(xz|xz-multiblock|zstd|bzip2|bzip2-lbzip2|br)(-C)?$' \
      -benchtime 1x -count 1 ./nar/compress/ | tee -a "$work/decode.txt" >&2
  done
fi

echo "== narfs vs Nix (integration TestBenchReport)" >&2
TMPDIR="$work" NARFS_BENCH=1 NARFS_BENCH_OUT="$work/table.md" NARFS_BENCH_DECODE="$work/decode.txt" \
  NARFS_BENCH_BIN="$PWD/bin/narfs" \
  go test -count=1 -timeout 100m -run '^TestBenchReport$' -v ./integration/ >&2

elapsed=$(( $(date +%s) - start ))
{
  echo "# narfs benchmarks"
  echo
  echo "Made by \`make bench\` (integration/bench.sh, integration/bench_test.go). Every figure is a"
  echo "ratio or a count taken in the same run; absolute times on a shared machine are noise."
  echo
  echo "- Date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "- Machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(awk '/MemTotal/ {printf "%.0f GiB RAM", $2/1048576}' /proc/meminfo), Linux $(uname -r)"
  echo "- Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
  dirty=$(git status --porcelain -- cmd fs nar remote go.mod go.sum | awk '{print $2}' | tr '\n' ' ')
  echo "- $(go version), $(nix --version), commit $(git rev-parse --short HEAD)${dirty:+ plus uncommitted changes to: ${dirty% }}"
  echo "- \`make bench\` wall time: ${elapsed} s"
  echo
  cat "$work/table.md"
  echo
  cat <<'EOF'
How each figure is taken:

- Cold = a fresh `narfs mount` with an empty `--cache-dir`, and `echo 3 > /proc/sys/vm/drop_caches`
  before the timed command (also before each `nix copy`, into a fresh `local?root=`). The mount's
  start-up is not timed; `nix copy`'s is. Nix 2.8 has no s3://, so Nix runs over http and narfs's
  s3 figures (versitygw on 127.0.0.1) are divided by the same `nix copy` time.
- Measure 1 and 3 share their reference: `nix copy` of the README's path must copy the whole closure.
- Measure 4: narfs throughput ÷ native throughput (higher is better), native = the file in Nix's
  extracted copy; page cache dropped before every read on both sides.
- Measure 5: both trees traversed once before the timed runs (no cache dropping).
- Measure 7: VmHWM from /proc/PID/status, reset with `echo 5 > /proc/PID/clear_refs` before the read.
- Measure 8: `go test -bench BenchmarkDecode -benchtime 1x ./nar/compress/`, five passes; ratio =
  throughput of narfs's decoder ÷ the C tool's on the same 100 MiB NAR (CPU time: the C tool's
  CPU time ÷ ours, which load from elsewhere on the machine disturbs less than wall time).
- Fetched ÷ read (measure 9): bytes served by the benchmark's HTTP server (narfs's own
  `upstream_bytes` for s3) ÷ bytes of file contents the command read.
- Measures 10–14 (integration/bench_indexed_test.go): the paths are pushed by `narfs push
  --no-closure` (zstd) into a file:// cache served over http on 127.0.0.1; "s3-region" puts a
  linkshape.S3Region proxy in front of that server, and `nix copy` (and nar-serve) are given the
  proxy's URL too. Requests and bytes are counted at the server, from after the mount is up.
- Measure 10: `bin/go version` and a hello-world `go build` under `env -i` (no GOROOT,
  GOTOOLCHAIN=local, HOME and GOCACHE fresh); reference = `nix copy` of the path into a fresh
  `local?root=` plus the same command from there. Bytes ÷ (the object bytes of the chunks
  covering bin/go + the index object).
- Measure 11: nar-serve (numtide, built from source: the Go module proxy does not serve it)
  reads the stock `nix copy` cache of the same path, since it rejects narinfo lines it does not
  know (`unknown key NarfsIndex`); it checks no signature. narfs's three requests take two round
  trips: the index (its alias, `index/<hash>.nidx`) is asked for together with the narinfo.
- Measure 18n: the walk of 18 on a `--no-open` mount (the kernel's no-open mode: no OPEN,
  RELEASE or FLUSH per file, page cache kept; reads of large files then go through narfs, as
  measure 4's "passthrough off").
- Measure 13: the interpreter is /usr/bin/python3.11 patched with patchelf to a store ld-linux
  and DT_RPATH; PYTHONHOME = the stdlib path; run as `unshare -m` with the mount (or the `nix
  copy` root's store) bound over /nix/store.
- Measure 14: both caches warmed by one read, then `cat` with the page cache dropped, alternating.
- Links (measures 1, 3, 15, 16, 17): "loopback" is the counting server itself; "s3-region"
  (20 ms to the first byte of every response, 90 MB/s per request) and "wan" (60 ms, 25 MB/s) put
  an integration/linkshape proxy in front of it, and `nix copy` is given the same proxy's URL.
  The proxy runs on the same 2 CPUs as narfs and Nix.
- Measure 6: the NAR object may arrive in parallel ranged parts; one fetch = the object's bytes
  served exactly once, whatever the number of requests.
- Measure 15: the first read of a file of a cold path from a stock cache needs its whole NAR
  fetched and verified; rate = object bytes ÷ that time. One stream = `curl` of the same object
  through the same link; on loopback the reference is `zstd -dc` of the object (the C decoder
  alone, reading the local file).
- Measure 16: `narfs prefetch --closure` into an empty cache dir, page cache dropped, vs `nix
  copy` of the same closure; then a mount of that cache dir runs the `tar` of measure 3 and the
  server counts its NAR requests.
- Measure 18 (integration/bench_walk_test.go): the Go toolchain path from the stock cache,
  fetched and read once, then `tar` through the mount and of /nix/store alternately, each timed
  run right after an untimed one (redone if the kernel's caches were dropped meanwhile); FUSE
  operations per file from the daemon's metrics.
- Measure 17: the commands of measures 10 and 13 on the stock cache (`nix copy`, zstd): narfs
  fetches whole NARs; reference = `nix copy` of the program's closure plus the same command.
- Measures 19 and 20 (integration/bench_builds_test.go): a derivation (builder: Debian's static
  busybox from the store) running `go build` of hello world (empty GOCACHE) or `go version` with
  the Go toolchain path of measure 10, all pushed by `narfs push` and served through the
  s3-region link. Time = the whole `nix build` / `nix-build` (evaluation included; for the 2.8
  mode also `narfs register --closure | nix-store --load-db`); the narfs mount (fresh cache dir)
  is up before the timer starts, page caches dropped. Reference = Nix 2.8 in a private mount
  namespace with an empty /nix/store and /nix/var substituting the same paths from the same
  link, then building. FUSE operations from the mount's metrics.
- Measure 21 (integration/bench_daemon_test.go): a file:// cache of 10,000 generated one-file
  paths signed with the test key; 32 Go clients of the worker protocol (1.38) on the mount's
  `--nix-daemon-socket`, each QueryPathInfo of every path, IsValidPath of every tenth,
  QueryValidPaths of all in batches of 500 (+10 absent paths); a cold round, then a warm one on
  the same connections, VmHWM reset with `echo 5 > /proc/PID/clear_refs` before each. The bound
  is twice (the Go heap doubles before a collection) the daemon's RSS before the queries plus
  what they add to the live heap: 1.5 KiB per cached narinfo and lookahead key (at most
  NarinfoCacheSize = 65,536 of them), 64 KiB of buffers per connection and the QueryValidPaths
  requests in flight; plus the goroutine stacks of 32 connections and their lookups.
EOF
} > "$out_md"
echo "== wrote $out_md (${elapsed} s)" >&2
cat "$out_md"
