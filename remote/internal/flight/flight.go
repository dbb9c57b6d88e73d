// Package flight runs work shared by concurrent callers (singleflight)
// without letting one caller's cancellation or a panic in the work take
// the others, or the process, down.
package flight

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"

	"golang.org/x/sync/singleflight"
)

// ErrBug marks a panic inside narfs that was caught: a bug, logged with its
// stack, answered as a plain I/O error so that one bad input never takes
// the mount down for everyone.
var ErrBug = errors.New("internal error (a bug in narfs; see the log)")

// Shared runs fn once for all concurrent callers of key. A caller whose
// context ends stops waiting (a reader's Ctrl-C interrupts its open at
// once) while the work goes on for the others and fills the caches; fn
// must therefore not use the caller's context for its I/O. A panic in fn
// (which runs on a goroutine of its own, where nothing else would catch
// it) becomes an error wrapping ErrBug. what names the work in the
// error of a caller who stopped waiting.
func Shared(ctx context.Context, log *slog.Logger, g *singleflight.Group, key, what string, fn func() (any, error)) (any, error) {
	select {
	case r := <-g.DoChan(key, func() (v any, err error) {
		defer RecoverBug(log, key, &err)
		return fn()
	}):
		return r.Val, r.Err
	case <-ctx.Done():
		return nil, fmt.Errorf("%s: %w", what, context.Cause(ctx))
	}
}

// RecoverBug turns a panic into an error wrapping ErrBug; use it deferred.
func RecoverBug(log *slog.Logger, what string, err *error) {
	if r := recover(); r != nil {
		log.Error("BUG: panic caught; answering with an I/O error", "in", what, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
		*err = fmt.Errorf("%s: %w: %v", what, ErrBug, r)
	}
}
