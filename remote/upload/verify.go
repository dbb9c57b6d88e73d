package upload

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/narfs/narfs/nar"
	"github.com/narfs/narfs/nar/compress"
	"github.com/narfs/narfs/remote/backend"
	"github.com/narfs/narfs/remote/chunkindex"
	"github.com/narfs/narfs/remote/narinfo"
)

// VerifyOptions tune Verify.
type VerifyOptions struct {
	Keys    []narinfo.PublicKey // trusted
	TempDir string
}

// Report is what Verify found about one path.
type Report struct {
	Path    string   // absolute store path, or the hash part if the narinfo is unreadable
	Reasons []string // empty when every check passed
	Indexed bool     // the narinfo names a chunk index
}

func (r *Report) failf(format string, args ...any) {
	r.Reasons = append(r.Reasons, fmt.Sprintf(format, args...))
}

// maxChunkFailures bounds the chunk failures listed per path.
const maxChunkFailures = 3

// Verify checks every claim the cache makes about the path of hash part
// hash: the narinfo parses and is signed by a trusted key (or its content
// address holds), the object hashes to FileHash/FileSize and decodes to a
// NAR of NarHash/NarSize, the .ls (if any) lists that NAR, and the index
// (if any) is signed, decodes, matches the narinfo, lists the NAR and has
// every chunk decode to its bytes. Problems are Reasons; the error is for
// what stops the check itself (a cancelled context, no temporary space).
func (c *Cache) Verify(ctx context.Context, hash string, opts VerifyOptions) (*Report, error) {
	r := &Report{Path: hash}
	ni, err := c.readNarinfo(ctx, hash)
	if err != nil {
		r.failf("narinfo: %v", err)
		return r, ctx.Err()
	}
	r.Path = ni.StorePath.Abs(storeDirOf(ni))
	if _, err := ni.Verify(opts.Keys); err != nil {
		if ni.CA == "" || ni.VerifyCA() != nil {
			r.failf("narinfo: %v", err)
		}
	}

	obj, err := newTemp(opts.TempDir, "narfs-verify-*")
	if err != nil {
		return r, err
	}
	defer obj.Close()
	var l *nar.Listing // the NAR's, when it could be read
	mismatch, err := c.download(ctx, ni, obj)
	if err != nil {
		r.failf("object %s: %v", ni.URL, err)
	} else {
		if mismatch != nil {
			r.failf("object %s: %v", ni.URL, mismatch)
		}
		// A wrong FileHash still leaves the NAR to check.
		if l, err = readNAR(ni, obj); err != nil {
			r.failf("object %s: %v", ni.URL, err)
			l = nil
		}
	}
	if err := ctx.Err(); err != nil {
		return r, err
	}

	if err := c.verifyListing(ctx, ni, l); err != nil {
		r.failf(".ls: %v", err)
	}
	c.verifyIndex(ctx, ni, opts.Keys, obj, l, r)
	return r, ctx.Err()
}

// download copies the narinfo's object to f. mismatch says how it
// differs from FileSize and FileHash where the narinfo gives them.
func (c *Cache) download(ctx context.Context, ni *narinfo.NarInfo, f *tempFile) (mismatch, err error) {
	o, err := c.B.Get(ctx, ni.URL)
	if err != nil {
		return nil, err
	}
	defer o.Body.Close()
	bound := objectBound(ni)
	if o.Size > bound {
		return nil, fmt.Errorf("%d bytes: %w: the narinfo allows %d", o.Size, errTooLong, bound)
	}
	d := newNarDigest()
	if _, err := io.Copy(io.MultiWriter(f, d), newBoundedReader(o.Body, bound, "object")); err != nil {
		return nil, err
	}
	if ni.FileSize != 0 && d.n != ni.FileSize {
		return fmt.Errorf("%d bytes, narinfo says FileSize %d", d.n, ni.FileSize), nil
	}
	if ni.FileHash != nil && ni.FileHash.Algo == "sha256" && !d.sum().Equal(*ni.FileHash) {
		return fmt.Errorf("hash %s, narinfo says FileHash %s", d.sum(), ni.FileHash), nil
	}
	return nil, nil
}

// readNAR decompresses the downloaded object and checks it is the NAR the
// narinfo signs, returning its listing.
func readNAR(ni *narinfo.NarInfo, f *tempFile) (*nar.Listing, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	dec, err := compress.NewReader(ni.EffectiveCompression(), f)
	if err != nil {
		return nil, err
	}
	defer dec.Close()
	d := newNarDigest()
	l, err := scan(newBoundedReader(dec, ni.NarSize, "NAR"), d, nil)
	if err != nil {
		return nil, fmt.Errorf("decoding the NAR: %w", err)
	}
	if err := d.check(ni.NarHash, ni.NarSize); err != nil {
		return nil, err
	}
	return l, nil
}

// verifyListing checks the .ls, if there is one, against the NAR's
// listing (or, without the NAR, against NarSize alone).
func (c *Cache) verifyListing(ctx context.Context, ni *narinfo.NarInfo, narListing *nar.Listing) error {
	data, err := backend.ReadAll(ctx, c.B, ni.StorePath.Hash+".ls", 6*ni.NarSize+64<<10)
	if errors.Is(err, backend.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	l, err := nar.DecodeListing(data)
	if err != nil {
		return err
	}
	if err := l.Check(ni.NarSize); err != nil {
		return err
	}
	if narListing != nil && !nar.SameTree(l.Root, narListing.Root) {
		return fmt.Errorf("does not list the NAR's contents")
	}
	return nil
}

// verifyIndex checks the path's chunk index, if it has one: layout 2
// under its alias (chunkindex.AliasKey), or layout 1 named by narinfo
// lines (which strict narinfo parsers refuse: a failure narfs index
// repairs).
func (c *Cache) verifyIndex(ctx context.Context, ni *narinfo.NarInfo, keys []narinfo.PublicKey, obj *tempFile, narListing *nar.Listing, r *Report) {
	bound := chunkindex.ObjectBound(ni.NarSize)
	url, size, legacy, err := chunkindex.Location(ni)
	var data []byte
	if legacy {
		r.Indexed = true
		r.failf("narinfo: carries %s lines (index layout 1), which strict narinfo parsers such as go-nix refuse (narfs index moves the index into its alias object)", chunkindex.KeyURL)
		if err != nil {
			r.failf("index: %v", err)
			return
		}
		if data, err = backend.ReadAll(ctx, c.B, url, min(size, bound)); err != nil {
			r.failf("index %s: %v", url, err)
			return
		}
		if int64(len(data)) != size {
			r.failf("index %s: %d bytes, narinfo says %d", url, len(data), size)
		}
		c.verifyAlias(ctx, ni, url, data, r)
	} else {
		url = chunkindex.AliasKey(ni.StorePath.Hash)
		data, err = backend.ReadAll(ctx, c.B, url, bound)
		if errors.Is(err, backend.ErrNotFound) {
			return // not indexed
		}
		r.Indexed = true
		if err != nil {
			r.failf("index %s: %v", url, err)
			return
		}
	}
	// Nothing of an index no trusted key signs is looked at further, as
	// readers do.
	o, _, err := chunkindex.VerifyObject(ni, data, keys)
	if err != nil {
		r.failf("index %s: %v", url, err)
		return
	}
	x, err := chunkindex.DecodeFor(o.Payload, ni.NarSize)
	if err != nil {
		r.failf("index %s: %v", url, err)
		return
	}
	if err := x.Matches(ni); err != nil {
		r.failf("index %s: %v", url, err)
	}
	if narListing != nil && !nar.SameTree(x.Listing.Root, narListing.Root) {
		r.failf("index %s: its listing is not the NAR's", url)
	}
	// Every chunk's stored range decodes, on its own, to its bytes; and
	// together they are the NAR.
	d := newNarDigest()
	failures := 0
	var buf, out []byte
	for i, ch := range x.Chunks {
		if failures >= maxChunkFailures {
			r.failf("index %s: more chunks not checked", url)
			return
		}
		buf = buf[:0]
		if int64(cap(buf)) < ch.FileLen {
			buf = make([]byte, ch.FileLen)
		}
		buf = buf[:ch.FileLen]
		if _, err := obj.ReadAt(buf, ch.FileOffset); err != nil {
			r.failf("index %s: chunk %d (NAR offset %d): reading the object at %d: %v", url, i, ch.NarOffset, ch.FileOffset, err)
			failures++
			continue
		}
		out, err = x.DecodeChunk(out[:0], ch, buf)
		if err != nil {
			r.failf("index %s: chunk %d (NAR offset %d): %v", url, i, ch.NarOffset, err)
			failures++
			continue
		}
		d.Write(out)
	}
	if failures == 0 {
		if err := d.check(ni.NarHash, ni.NarSize); err != nil {
			r.failf("index %s: the chunks do not make the NAR: %v", url, err)
		}
	}
}

// verifyAlias checks the copy of the index that readers fetch together
// with the narinfo (chunkindex.AliasKey). Where there is one, it must be
// the narinfo's index: readers check it like the index itself, reject any
// other and fetch the narinfo's, so a stale or foreign copy costs every
// cold lookup of the path one more round trip (and looks like tampering
// in their logs). Where the cache's nix-cache-info says it keeps such
// copies, a missing one costs the same.
func (c *Cache) verifyAlias(ctx context.Context, ni *narinfo.NarInfo, url string, index []byte, r *Report) {
	key := chunkindex.AliasKey(ni.StorePath.Hash)
	alias, err := backend.ReadAll(ctx, c.B, key, int64(len(index)))
	switch {
	case errors.Is(err, backend.ErrNotFound):
		if c.keepsAliases(ctx) {
			r.failf("index alias %s: missing, though nix-cache-info says the cache keeps them (narfs index writes it)", key)
		}
	case errors.Is(err, backend.ErrTooLarge), err == nil && !bytes.Equal(alias, index):
		r.failf("index alias %s: not the index the narinfo names (%s); readers reject it and fetch that one, a round trip more per lookup (narfs index rewrites it)", key, url)
	case err != nil:
		r.failf("index alias %s: %v", key, err)
	}
}

// keepsAliases reports whether the cache's nix-cache-info says it keeps
// index aliases, reading it once.
func (c *Cache) keepsAliases(ctx context.Context) bool {
	c.aliasesOnce.Do(func() {
		data, err := backend.ReadAll(ctx, c.B, "nix-cache-info", narinfo.MaxSize)
		if err != nil {
			return
		}
		if info, err := narinfo.ParseCacheInfo(data); err == nil {
			c.aliases = info.IndexAliases
		}
	})
	return c.aliases
}
