package nixdaemon

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/narfs/narfs/remote/storepath"
)

// errClose asks serve to close the connection after a reply that leaves
// the stream out of step (see refuse).
var errClose = errors.New("closing after an operation narfs cannot skip")

// perform reads op's arguments, answers it and flushes. A returned error
// closes the connection; errors the client should see are sent with fail
// and are not returned.
func (c *conn) perform(ctx context.Context, op Op) error {
	switch op {
	case OpSetOptions:
		return c.setOptions()
	case OpIsValidPath:
		return c.withPath(func(p string) error {
			ok, err := c.isValid(ctx, p)
			if err != nil {
				return c.storeFail(op, p, err)
			}
			return c.reply(func(e *encoder) { e.boolean(ok) })
		})
	case OpQueryValidPaths:
		return c.queryValidPaths(ctx)
	case OpQueryPathInfo:
		return c.withPath(func(p string) error { return c.queryPathInfo(ctx, p) })
	case OpQueryPathHash, OpQueryReferences, OpQueryDeriver:
		return c.withPath(func(p string) error {
			info, err := c.validInfo(ctx, op, p)
			if info == nil {
				return err
			}
			return c.reply(func(e *encoder) {
				switch op {
				case OpQueryPathHash:
					e.str(hex.EncodeToString(info.NarHash))
				case OpQueryReferences:
					e.strs(sorted(info.References))
				default:
					e.str(info.Deriver)
				}
			})
		})
	case OpQueryPathFromHashPart:
		h, err := c.d.str(MaxString)
		if err != nil {
			return noEOF(err)
		}
		var p string
		if storepath.ValidHashPart(h) {
			var ok bool
			p, ok, err = c.srv.Store.QueryPathFromHashPart(ctx, h)
			if err != nil {
				return c.storeFail(op, h, err)
			}
			if !ok {
				p = ""
			}
		}
		return c.reply(func(e *encoder) { e.str(p) })
	case OpNarFromPath:
		return c.withPath(func(p string) error { return c.narFromPath(ctx, p) })

	// Questions whose honest answer from a read-only store of binary
	// cache paths is "none".
	case OpHasSubstitutes:
		return c.withPath(func(string) error { return c.reply(func(e *encoder) { e.boolean(false) }) })
	case OpQuerySubstitutablePathInfo:
		return c.withPath(func(string) error { return c.reply(func(e *encoder) { e.u64(0) }) })
	case OpQuerySubstitutablePaths:
		if _, err := c.d.strs(MaxString); err != nil {
			return noEOF(err)
		}
		return c.reply(func(e *encoder) { e.strs(nil) })
	case OpQuerySubstitutablePathInfos:
		// Before 1.22 a set of paths, since a map of path to content
		// address.
		n, err := c.d.count()
		if err != nil {
			return noEOF(err)
		}
		per := 1
		if minor(c.version) >= 22 {
			per = 2
		}
		for range n * per {
			if _, err := c.d.str(MaxString); err != nil {
				return noEOF(err)
			}
		}
		return c.reply(func(e *encoder) { e.u64(0) })
	case OpQueryReferrers, OpQueryValidDerivers:
		// A binary cache has no reverse index: the referrers of a path
		// are unknowable without reading every narinfo, and its valid
		// derivers would rest on the unsigned Deriver field. An empty set
		// is what Nix answers for a path nothing refers to.
		return c.withPath(func(string) error { return c.reply(func(e *encoder) { e.strs(nil) }) })
	case OpQueryRealisation:
		// Realisations of content-addressed derivations are not served.
		if _, err := c.d.str(MaxString); err != nil {
			return noEOF(err)
		}
		return c.reply(func(e *encoder) { e.strs(nil) })
	case OpQueryMissing:
		return c.queryMissing(ctx)
	case OpBuildPaths, OpBuildPathsWithResults:
		return c.buildPaths(ctx, op)
	case OpEnsurePath:
		return c.withPath(func(p string) error {
			if ok, err := c.requireValid(ctx, op, p); !ok {
				return err
			}
			return c.reply(func(e *encoder) { e.u64(1) })
		})

	// Garbage-collector roots: narfs never deletes a path, so a root
	// changes nothing; the requests succeed and record nothing.
	case OpAddTempRoot, OpAddIndirectRoot:
		if _, err := c.d.str(MaxString); err != nil {
			return noEOF(err)
		}
		return c.reply(func(e *encoder) { e.u64(1) })
	case OpSyncWithGC:
		return c.reply(func(e *encoder) { e.u64(1) })
	case OpFindRoots:
		return c.reply(func(e *encoder) { e.u64(0) })
	case OpAddPermRoot:
		if _, err := c.d.str(MaxString); err != nil {
			return noEOF(err)
		}
		root, err := c.d.str(MaxString)
		if err != nil {
			return noEOF(err)
		}
		return c.reply(func(e *encoder) { e.str(root) })
	}
	return c.refuse(op)
}

// reply ends the stderr channel and sends the reply body.
func (c *conn) reply(body func(e *encoder)) error {
	c.e.u64(stderrLast)
	body(c.e)
	return c.flush()
}

// fail sends msg as the operation's Nix error; the connection stays
// usable.
func (c *conn) fail(msg string) error {
	writeError(c.e, c.version, msg)
	return c.flush()
}

// storeFail reports a failure of the store (not an invalid path).
func (c *conn) storeFail(op Op, subject string, err error) error {
	c.log.Warn("nix daemon: store failed", "op", op.String(), "path", subject, "err", err)
	return c.fail(fmt.Sprintf("narfs: %s %s: %v", op, subject, err))
}

// withPath reads one store path argument and runs fn with it; a
// malformed path is the client's error, answered as Nix's daemon does.
func (c *conn) withPath(fn func(p string) error) error {
	p, err := c.d.str(MaxString)
	if err != nil {
		return noEOF(err)
	}
	if err := c.checkPath(p); err != nil {
		return c.fail(err.Error())
	}
	return fn(p)
}

// checkPath accepts an absolute store path in the store directory, with a
// valid base name (Nix's parseStorePath).
func (c *conn) checkPath(p string) error {
	dir := c.srv.Store.StoreDir()
	base, ok := strings.CutPrefix(p, dir+"/")
	if !ok || strings.Contains(base, "/") {
		return fmt.Errorf("path '%s' is not in the Nix store", p)
	}
	if _, err := storepath.Parse(base); err != nil {
		return fmt.Errorf("path '%s' is not a valid store path", p)
	}
	return nil
}

// isValid tells whether p is valid, with the Store's Validator when it
// has one (no metadata built, no signature checked again).
func (c *conn) isValid(ctx context.Context, p string) (bool, error) {
	if v, ok := c.srv.Store.(Validator); ok {
		return v.IsValidPath(ctx, p)
	}
	_, ok, err := c.srv.Store.QueryPathInfo(ctx, p)
	return ok, err
}

// requireValid is validInfo without the metadata: false after answering
// the client with an error.
func (c *conn) requireValid(ctx context.Context, op Op, p string) (bool, error) {
	ok, err := c.isValid(ctx, p)
	if err != nil {
		return false, c.storeFail(op, p, err)
	}
	if !ok {
		return false, c.fail(fmt.Sprintf("path '%s' is not valid", p))
	}
	return true, nil
}

// validInfo returns the path's metadata, or nil after answering the
// client with an error (the error returned is then the connection's).
func (c *conn) validInfo(ctx context.Context, op Op, p string) (*PathInfo, error) {
	info, ok, err := c.srv.Store.QueryPathInfo(ctx, p)
	if err != nil {
		return nil, c.storeFail(op, p, err)
	}
	if !ok {
		// Nix's own words: clients before 1.17 match on "is not valid".
		return nil, c.fail(fmt.Sprintf("path '%s' is not valid", p))
	}
	return info, nil
}

func (c *conn) setOptions() error {
	// keepFailed, keepGoing, tryFallback, verbosity, maxBuildJobs,
	// maxSilentTime, useBuildHook, verboseBuild, logType,
	// printBuildTrace, buildCores, useSubstitutes.
	for range 12 {
		if _, err := c.d.u64(); err != nil {
			return noEOF(err)
		}
	}
	if minor(c.version) >= 12 {
		n, err := c.d.count()
		if err != nil {
			return noEOF(err)
		}
		for range 2 * n {
			if _, err := c.d.str(MaxString); err != nil {
				return noEOF(err)
			}
		}
	}
	// Nothing a client may set changes what a read-only store answers.
	c.e.u64(stderrLast)
	return c.flush()
}

func (c *conn) queryPathInfo(ctx context.Context, p string) error {
	info, ok, err := c.srv.Store.QueryPathInfo(ctx, p)
	if err != nil {
		return c.storeFail(OpQueryPathInfo, p, err)
	}
	if !ok {
		if minor(c.version) < 17 {
			return c.fail(fmt.Sprintf("path '%s' is not valid", p))
		}
		return c.reply(func(e *encoder) { e.u64(0) })
	}
	return c.reply(func(e *encoder) {
		if minor(c.version) >= 17 {
			e.u64(1)
		}
		writePathInfo(e, c.version, info)
	})
}

// writePathInfo sends an UnkeyedValidPathInfo.
func writePathInfo(e *encoder, version uint64, info *PathInfo) {
	e.str(info.Deriver)
	e.str(hex.EncodeToString(info.NarHash))
	e.strs(sorted(info.References))
	var reg uint64
	if !info.RegistrationTime.IsZero() && info.RegistrationTime.Unix() > 0 {
		reg = uint64(info.RegistrationTime.Unix())
	}
	e.u64(reg)
	e.u64(info.NarSize)
	if minor(version) >= 16 {
		e.boolean(info.Ultimate)
		e.strs(sorted(info.Sigs))
		e.str(info.CA)
	}
}

// sorted returns ss sorted and without duplicates, as Nix's sets are.
func sorted(ss []string) []string {
	out := slices.Clone(ss)
	slices.Sort(out)
	return slices.Compact(out)
}

// narFromPath sends STDERR_LAST and then the NAR itself, unframed: Nix
// reads it with a NAR parser, which knows where it ends.
func (c *conn) narFromPath(ctx context.Context, p string) error {
	if ok, err := c.requireValid(ctx, OpNarFromPath, p); !ok {
		return err
	}
	w := &narWriter{c: c}
	err := c.srv.Store.NarFromPath(ctx, p, w)
	if !w.started {
		if err != nil {
			return c.storeFail(OpNarFromPath, p, err)
		}
		return c.storeFail(OpNarFromPath, p, errors.New("empty NAR"))
	}
	if err != nil {
		// Part of the NAR is out: the client's parser will fail on the
		// closed stream, and nothing else can tell it.
		c.log.Warn("nix daemon: NAR failed after its start; closing the connection", "path", p, "err", err)
		return fmt.Errorf("%s: %w", p, err)
	}
	return c.flush()
}

// narWriter starts the reply with its first byte and bounds every write
// by RequestTimeout.
type narWriter struct {
	c       *conn
	started bool
}

func (w *narWriter) Write(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	if !w.started {
		w.started = true
		w.c.e.u64(stderrLast)
	}
	w.c.c.SetWriteDeadline(time.Now().Add(w.c.srv.requestTimeout()))
	return w.c.e.w.Write(b)
}

var _ io.Writer = (*narWriter)(nil)
