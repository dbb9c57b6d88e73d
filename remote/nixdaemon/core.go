package nixdaemon

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"slices"
	"strings"

	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/remote"
	"github.com/narfs/narfs/remote/narinfo"
	"github.com/narfs/narfs/remote/storepath"
)

// Core serves narfs's core (remote.Core) as a Store: a path is valid
// exactly when the mount would serve it, its metadata is that of its
// trusted narinfo, and its NAR is rebuilt from the verified listing and
// the verified bytes of its files. It uses only what the core vouches
// for (Resolve, VerifiedListing, Open), never unverified metadata, so it
// has no generation to watch.
type Core struct {
	core *remote.Core
	keys []narinfo.PublicKey
}

// NewCore returns a Store over core. keys are the trusted keys the caches
// were opened with: only signatures that verify under one of them are
// reported.
func NewCore(core *remote.Core, keys []narinfo.PublicKey) *Core {
	return &Core{core: core, keys: keys}
}

var (
	_ Store     = (*Core)(nil)
	_ Validator = (*Core)(nil)
)

// StoreDir is the caches' store directory.
func (c *Core) StoreDir() string { return c.core.StoreDir() }

// resolve maps an absolute store path to its trusted narinfo; nil
// without an error when no cache serves it.
func (c *Core) resolve(ctx context.Context, p string) (*remote.PathInfo, error) {
	base, ok := strings.CutPrefix(p, c.StoreDir()+"/")
	if !ok {
		return nil, nil
	}
	pi, err := c.core.Resolve(ctx, base)
	if errors.Is(err, remote.ErrNotFound) || errors.Is(err, remote.ErrUntrusted) {
		// Exactly the paths the mount hides: missing or untrusted.
		return nil, nil
	}
	if err == nil {
		// A client asking for a path is about to read it (a build's
		// input): its index is fetched and decoded meanwhile.
		c.core.LookAhead(pi)
	}
	return pi, err
}

// QueryPathInfo reports a trusted path's narinfo. What is reported:
// NarHash, NarSize and References are signed (or recompute the
// content-addressed store path); Sigs are only the signatures that verify
// under a trusted key; CA only when it recomputes the store path; Deriver
// is the narinfo's, unsigned as in every binary cache (Nix reports it the
// same way for a substituted path); RegistrationTime is zero (a binary
// cache records none); Ultimate is false (narfs built nothing).
func (c *Core) QueryPathInfo(ctx context.Context, p string) (*PathInfo, bool, error) {
	pi, err := c.resolve(ctx, p)
	if err != nil || pi == nil {
		return nil, false, err
	}
	info, err := c.pathInfo(pi)
	if err != nil {
		return nil, false, err
	}
	return info, true, nil
}

// IsValidPath is QueryPathInfo's ok and err without the metadata: the
// trust verdict is the resolved narinfo's, so no signature is checked
// again (QueryPathInfo checks each to report only those that verify).
func (c *Core) IsValidPath(ctx context.Context, p string) (bool, error) {
	pi, err := c.resolve(ctx, p)
	if err != nil || pi == nil {
		return false, err
	}
	if err := servable(pi); err != nil {
		return false, err
	}
	return true, nil
}

// servable checks what the protocol needs of a trusted narinfo.
func servable(pi *remote.PathInfo) error {
	ni := pi.NarInfo
	if ni.NarHash.Algo != "sha256" || len(ni.NarHash.Digest) != sha256.Size {
		return fmt.Errorf("%s: NarHash %s is not SHA-256, which the daemon protocol requires", pi.Path, ni.NarHash.Algo)
	}
	if ni.NarSize <= 0 {
		return fmt.Errorf("%s: NarSize unknown", pi.Path)
	}
	return nil
}

func (c *Core) pathInfo(pi *remote.PathInfo) (*PathInfo, error) {
	ni := pi.NarInfo
	dir := c.StoreDir()
	if err := servable(pi); err != nil {
		return nil, err
	}
	info := &PathInfo{
		Path:    pi.Path.Abs(dir),
		NarHash: slices.Clone(ni.NarHash.Digest),
		NarSize: uint64(ni.NarSize),
	}
	if ni.Deriver != "" {
		if _, err := storepath.Parse(ni.Deriver); err == nil {
			info.Deriver = dir + "/" + ni.Deriver
		}
	}
	for _, r := range ni.References {
		info.References = append(info.References, r.Abs(dir))
	}
	if fp, err := ni.Fingerprint(); err == nil {
		for _, s := range ni.Sigs {
			if _, err := narinfo.VerifyFingerprint(fp, []string{s}, c.keys); err == nil {
				info.Sigs = append(info.Sigs, s)
			}
		}
	}
	if ni.CA != "" && ni.VerifyCA() == nil {
		info.CA = ni.CA
	}
	return info, nil
}

// QueryPathFromHashPart resolves a hash part alone.
func (c *Core) QueryPathFromHashPart(ctx context.Context, hash string) (string, bool, error) {
	pi, err := c.core.ResolveHash(ctx, hash)
	if errors.Is(err, remote.ErrNotFound) || errors.Is(err, remote.ErrUntrusted) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	return pi.Path.Abs(c.StoreDir()), true, nil
}

// NarFromPath writes the path's NAR, serialised from its verified listing
// and its files' verified bytes (the local copy of a stock path, checked
// chunks of an indexed one; NAR serialisation is canonical, so this is
// the cache's NAR byte for byte). The NAR is hashed on its way out and
// its last 16 bytes are held back until it matches the signed NarHash and
// NarSize: a client never receives a whole NAR that is not the signed
// one (a mismatch, say a local file changed under narfs, is an error and
// the client's NAR parser fails at the missing end).
func (c *Core) NarFromPath(ctx context.Context, p string, w io.Writer) error {
	pi, err := c.resolve(ctx, p)
	if err != nil {
		return err
	}
	if pi == nil {
		return fmt.Errorf("%s: %w", p, remote.ErrNotFound)
	}
	l, err := c.core.VerifiedListing(ctx, pi)
	if err != nil {
		return err
	}
	if l.Root == nil {
		return fmt.Errorf("%s: empty verified listing", p)
	}
	if err := l.Check(pi.NarInfo.NarSize); err != nil {
		return fmt.Errorf("%s: verified listing: %w", p, err)
	}
	hw := &heldWriter{w: w, h: sha256.New()}
	nw := nar.NewWriter(hw)
	s := &narSerializer{ctx: ctx, core: c.core, pi: pi, w: nw}
	if err := s.node(l.Root, ""); err != nil {
		return fmt.Errorf("%s: NAR: %w", p, err)
	}
	if err := nw.Close(); err != nil {
		return fmt.Errorf("%s: NAR: %w", p, err)
	}
	ni := pi.NarInfo
	if hw.n != ni.NarSize || !slices.Equal(hw.h.Sum(nil), ni.NarHash.Digest) {
		return fmt.Errorf("%s: %w: the NAR rebuilt from the local cache (%d bytes) does not match the signed NarHash and NarSize", p, remote.ErrCorrupt, hw.n)
	}
	return hw.release()
}

// narSerializer writes a verified listing's nodes as NAR tokens.
type narSerializer struct {
	ctx  context.Context
	core *remote.Core
	pi   *remote.PathInfo
	w    *nar.Writer
}

func (s *narSerializer) node(n *nar.Node, sub string) error {
	switch n.Type {
	case nar.TypeSymlink:
		return s.w.Symlink(n.Target)
	case nar.TypeRegular:
		return s.file(n, sub)
	case nar.TypeDirectory:
		if err := s.w.Directory(); err != nil {
			return err
		}
		names := make([]string, 0, len(n.Entries))
		for name := range n.Entries {
			names = append(names, name)
		}
		slices.Sort(names) // byte order, as Nix writes entries
		for _, name := range names {
			if err := s.w.Entry(name); err != nil {
				return err
			}
			child := name
			if sub != "" {
				child = sub + "/" + name
			}
			if err := s.node(n.Entries[name], child); err != nil {
				return err
			}
		}
		return s.w.EndDirectory()
	}
	return fmt.Errorf("%s: node type %v", sub, n.Type)
}

// file writes the regular file sub, whose node n is the verified
// listing's, from the core's verified bytes (whether by chunks or from
// the local NAR is the core's choice). The file the core opened must be
// the node the listing promised: a NAR with another size or mode would be
// cut off by the hash check at the end, but only after its bytes went
// out.
func (s *narSerializer) file(n *nar.Node, sub string) error {
	f, err := s.core.Open(s.ctx, s.pi, sub)
	if err != nil {
		return err
	}
	defer f.Close()
	if vn := f.Node(); vn.Size != n.Size || vn.Executable != n.Executable {
		return fmt.Errorf("%s: %w: the local file disagrees with the verified listing", sub, remote.ErrCorrupt)
	}
	return s.w.File(n.Executable, n.Size, f.Reader(s.ctx))
}

// heldWriter hashes and counts what passes and holds the last held bytes
// back until release.
type heldWriter struct {
	w    io.Writer
	h    hash.Hash
	n    int64
	tail []byte
}

// held is the NAR's closing token, the root node's ")": without it no NAR
// parser accepts the archive.
const held = 16

func (hw *heldWriter) Write(b []byte) (int, error) {
	hw.h.Write(b)
	hw.n += int64(len(b))
	if len(hw.tail)+len(b) <= held {
		hw.tail = append(hw.tail, b...)
		return len(b), nil
	}
	if len(b) >= held {
		if len(hw.tail) > 0 {
			if _, err := hw.w.Write(hw.tail); err != nil {
				return 0, err
			}
		}
		if _, err := hw.w.Write(b[:len(b)-held]); err != nil {
			return 0, err
		}
		hw.tail = append(hw.tail[:0], b[len(b)-held:]...)
		return len(b), nil
	}
	k := len(hw.tail) + len(b) - held
	if _, err := hw.w.Write(hw.tail[:k]); err != nil {
		return 0, err
	}
	rest := append(make([]byte, 0, held), hw.tail[k:]...)
	hw.tail = append(rest, b...)
	return len(b), nil
}

func (hw *heldWriter) release() error {
	_, err := hw.w.Write(hw.tail)
	return err
}
