package fs

import (
	"hash/fnv"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/narfs/narfs/nar"
)

// mtime is Nix's canonical store timestamp: 1970-01-01T00:00:01Z.
const mtime = 1

const blockSize = 4096

// inodeNumber is stable across lookups and remounts: a hash of the store
// path's hash part and the sub-path. Inode 1 is the root.
func inodeNumber(hashPart, sub string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(hashPart))
	h.Write([]byte{'/'})
	h.Write([]byte(sub))
	ino := h.Sum64()
	if ino <= 1 {
		ino += 2
	}
	return ino
}

// fileMode is the type and permission bits a Nix store shows.
func fileMode(n *nar.Node) uint32 {
	switch n.Type {
	case nar.TypeDirectory:
		return syscall.S_IFDIR | 0o555
	case nar.TypeSymlink:
		return syscall.S_IFLNK | 0o777
	}
	if n.Executable {
		return syscall.S_IFREG | 0o555
	}
	return syscall.S_IFREG | 0o444
}

func fillAttr(out *fuse.Attr, ino uint64, n *nar.Node) {
	out.Ino = ino
	out.Mode = fileMode(n)
	out.Nlink = 1
	switch n.Type {
	case nar.TypeRegular:
		out.Size = uint64(n.Size)
	case nar.TypeSymlink:
		out.Size = uint64(len(n.Target))
	case nar.TypeDirectory:
		out.Nlink = 2
		out.Size = blockSize
	}
	out.Blocks = (out.Size + 511) / 512
	out.Blksize = blockSize
	out.Mtime, out.Ctime, out.Atime = mtime, mtime, mtime
}

func fillDirAttr(out *fuse.Attr, ino uint64) {
	fillAttr(out, ino, &nar.Node{Type: nar.TypeDirectory})
}
