package nixdaemon

import (
	"context"
	"fmt"
	"strings"

	"golang.org/x/sync/errgroup"
)

// Operations on lists of paths: validity, what a build would need, and
// builds of what is already valid.

// validSubset returns the valid paths among ps, looked up Jobs at a time.
func (c *conn) validSubset(ctx context.Context, ps []string) ([]bool, error) {
	valid := make([]bool, len(ps))
	g, gctx := errgroup.WithContext(ctx)
	jobs := c.srv.Jobs
	if jobs <= 0 {
		jobs = defaultJobs
	}
	g.SetLimit(jobs)
	for i, p := range ps {
		if c.checkPath(p) != nil {
			continue // not a store path: not valid
		}
		g.Go(func() error {
			ok, err := c.isValid(gctx, p)
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			valid[i] = ok
			return nil
		})
	}
	return valid, g.Wait()
}

func (c *conn) queryValidPaths(ctx context.Context) error {
	ps, err := c.d.strs(MaxString)
	if err != nil {
		return noEOF(err)
	}
	if minor(c.version) >= 27 {
		// Whether to substitute missing paths first: narfs has no
		// substituters of its own, so the answer is the same.
		if _, err := c.d.u64(); err != nil {
			return noEOF(err)
		}
	}
	valid, err := c.validSubset(ctx, ps)
	if err != nil {
		return c.storeFail(OpQueryValidPaths, fmt.Sprintf("(%d paths)", len(ps)), err)
	}
	var out []string
	for i, p := range ps {
		if valid[i] {
			out = append(out, p)
		}
	}
	return c.reply(func(e *encoder) { e.strs(sorted(out)) })
}

// queryMissing answers what a build of the targets would need. narfs
// builds and substitutes nothing: a valid path needs nothing; any other
// target, and every derivation output ("drv!out"), is unknown, which is
// what Nix reports for what it can neither build nor substitute.
func (c *conn) queryMissing(ctx context.Context) error {
	targets, err := c.d.strs(MaxString)
	if err != nil {
		return noEOF(err)
	}
	var opaque []string
	var unknown []string
	for _, t := range targets {
		if drv, _, isDrv := strings.Cut(t, "!"); isDrv {
			unknown = append(unknown, drv)
			continue
		}
		opaque = append(opaque, t)
	}
	valid, err := c.validSubset(ctx, opaque)
	if err != nil {
		return c.storeFail(OpQueryMissing, fmt.Sprintf("(%d paths)", len(targets)), err)
	}
	for i, p := range opaque {
		if !valid[i] {
			unknown = append(unknown, p)
		}
	}
	return c.reply(func(e *encoder) {
		e.strs(nil) // willBuild
		e.strs(nil) // willSubstitute
		e.strs(sorted(unknown))
		e.u64(0) // downloadSize
		e.u64(0) // narSize
	})
}

// buildPaths answers a build of paths that are all valid: there is
// nothing to do (Nix's answer too; `nix copy` asks for this before it
// copies). Any other target needs a build or a substitution, which a
// read-only store refuses.
func (c *conn) buildPaths(ctx context.Context, op Op) error {
	targets, err := c.d.strs(MaxString)
	if err != nil {
		return noEOF(err)
	}
	var mode uint64 // normal, repair, check
	if op == OpBuildPathsWithResults || minor(c.version) >= 15 {
		if mode, err = c.d.u64(); err != nil {
			return noEOF(err)
		}
	}
	if mode != 0 {
		return c.fail(fmt.Sprintf("narfs serves this store read-only: %s in repair or check mode is refused", op))
	}
	for _, t := range targets {
		if strings.Contains(t, "!") {
			return c.fail(fmt.Sprintf("narfs serves this store read-only: cannot build '%s'", t))
		}
		if err := c.checkPath(t); err != nil {
			return c.fail(err.Error())
		}
	}
	valid, err := c.validSubset(ctx, targets)
	if err != nil {
		return c.storeFail(op, fmt.Sprintf("(%d paths)", len(targets)), err)
	}
	for i, t := range targets {
		if !valid[i] {
			return c.fail(fmt.Sprintf("narfs serves this store read-only: path '%s' is not valid, and cannot be built or substituted here", t))
		}
	}
	return c.reply(func(e *encoder) {
		if op == OpBuildPaths {
			e.u64(1)
			return
		}
		// One KeyedBuildResult per target (1.34 and later).
		e.u64(uint64(len(targets)))
		for _, t := range targets {
			e.str(t)
			e.u64(buildAlreadyValid)
			e.str("") // errorMsg
			e.u64(0)  // timesBuilt
			e.u64(0)  // isNonDeterministic
			e.u64(0)  // startTime
			e.u64(0)  // stopTime
			if minor(c.version) >= 37 {
				e.u64(0) // cpuUser: none
				e.u64(0) // cpuSystem: none
			}
			e.u64(0) // builtOutputs: none
		}
	})
}

// buildAlreadyValid is BuildResult::AlreadyValid.
const buildAlreadyValid = 2
