// Package integration holds narfs's end-to-end tests: real Nix 2.8 makes
// the store paths and binary caches, real FUSE mounts them through the
// narfs binary, and caches are served from a directory, an HTTP server on
// 127.0.0.1 and a real S3-compatible server (versitygw). Everything the
// tests start, they stop. They need root, /dev/fuse, nix-bin, fuse3 and
// versitygw (`make deps`).
package integration
