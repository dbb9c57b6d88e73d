package nixdaemon

import (
	"fmt"
	"io"
)

// field is one argument of a request narfs refuses, read only to be
// skipped: skipping keeps the connection in step, so the client gets the
// refusal as the operation's error and may go on using the connection
// (Nix keeps connections in a pool and reuses one after a daemon error).
type field uint8

const (
	fU64    field = iota // a number or boolean
	fStr                 // a string of any length, discarded as it is read
	fStrs                // a list of such strings
	fFramed              // a framed stream, to its empty frame
	fDrv                 // a BasicDerivation (BuildDerivation)
)

// refusedArgs lists the arguments of each refused operation that narfs
// can skip, by negotiated minor version (see doc.go, Operations). An
// operation absent here is refused and the connection closed.
func refusedArgs(op Op, minorVersion uint64) ([]field, bool) {
	switch op {
	case OpAddToStore:
		if minorVersion >= 25 {
			return []field{fStr, fStr, fStrs, fU64, fFramed}, true
		}
		// Before 1.25 a NAR follows inline, unframed: only a NAR parser
		// finds its end.
		return nil, false
	case OpAddTextToStore:
		return []field{fStr, fStr, fStrs}, true
	case OpExportPath:
		return []field{fStr, fU64}, true
	case OpCollectGarbage:
		return []field{fU64, fStrs, fU64, fU64, fU64, fU64, fU64}, true
	case OpQueryDerivationOutputs, OpQueryDerivationOutputNames, OpQueryDerivationOutputMap:
		return []field{fStr}, true
	case OpQueryAllValidPaths, OpImportPaths, OpOptimiseStore:
		// ImportPaths sends its data only when asked (STDERR_READ).
		return nil, true
	case OpVerifyStore:
		return []field{fU64, fU64}, true
	case OpBuildDerivation:
		return []field{fStr, fDrv, fU64}, true
	case OpAddSignatures:
		return []field{fStr, fStrs}, true
	case OpAddToStoreNar:
		if minorVersion >= 23 {
			return []field{fStr, fStr, fStr, fStrs, fU64, fU64, fU64, fStrs, fStr, fU64, fU64, fFramed}, true
		}
		return nil, false // the NAR comes through STDERR_READ or inline
	case OpRegisterDrvOutput:
		if minorVersion >= 31 {
			return []field{fStr}, true // a realisation as JSON
		}
		return []field{fStr, fStr}, true
	case OpAddMultipleToStore:
		return []field{fU64, fU64, fFramed}, true
	case OpAddBuildLog:
		return []field{fStr, fFramed}, true
	}
	return nil, false
}

// refuseMessage is what a client prints for a refused operation.
func refuseMessage(op Op) string {
	switch op {
	case OpQueryAllValidPaths:
		return "narfs does not list every path of its caches; query paths by name"
	case OpQueryDerivationOutputs, OpQueryDerivationOutputNames, OpQueryDerivationOutputMap, OpExportPath:
		return fmt.Sprintf("narfs does not support operation %s", op)
	case OpQueryFailedPaths, OpClearFailedPaths:
		return fmt.Sprintf("removed operation %s", op)
	}
	if _, known := opNames[op]; !known {
		return fmt.Sprintf("invalid operation %d", uint64(op))
	}
	return fmt.Sprintf("narfs serves this store read-only: operation %s is refused", op)
}

// refuse answers op with an error. When its arguments can be skipped the
// connection stays usable; otherwise the error is sent and the connection
// closed, as nix-daemon does for an error before its reply has started.
func (c *conn) refuse(op Op) error {
	fields, ok := refusedArgs(op, minor(c.version))
	msg := refuseMessage(op)
	if !ok {
		c.log.Info("nix daemon: refusing an operation and closing", "op", op.String())
		if err := c.fail(msg); err != nil {
			return err
		}
		return fmt.Errorf("%w: %s", errClose, msg)
	}
	for _, f := range fields {
		if err := c.skip(f); err != nil {
			return noEOF(err)
		}
	}
	c.log.Debug("nix daemon: refused", "op", op.String())
	return c.fail(msg)
}

// progress pushes the read deadline on while a payload keeps arriving.
func (c *conn) progress() { c.deadline(c.srv.requestTimeout()) }

func (c *conn) skip(f field) error {
	switch f {
	case fU64:
		_, err := c.d.u64()
		return err
	case fStr:
		return c.d.skipStr(c.progress)
	case fStrs:
		n, err := c.d.count()
		if err != nil {
			return err
		}
		for range n {
			if err := c.d.skipStr(c.progress); err != nil {
				return err
			}
		}
		return nil
	case fFramed:
		return c.d.skipFramed(c.progress)
	case fDrv:
		// Outputs (name, path, hash algorithm, hash), input sources,
		// platform, builder, arguments, environment (key, value).
		n, err := c.d.count()
		if err != nil {
			return err
		}
		for range 4 * n {
			if err := c.d.skipStr(c.progress); err != nil {
				return err
			}
		}
		for _, g := range []field{fStrs, fStr, fStr, fStrs} {
			if err := c.skip(g); err != nil {
				return err
			}
		}
		if n, err = c.d.count(); err != nil {
			return err
		}
		for range 2 * n {
			if err := c.d.skipStr(c.progress); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("bug: field kind %d", f)
}

// skipStr discards a string of any length and its padding, checking
// nothing but the framing: its bytes are never kept.
func (d *decoder) skipStr(progress func()) error {
	n, err := d.u64()
	if err != nil {
		return err
	}
	if n > 1<<62 {
		return fmt.Errorf("%w: string of %d bytes", ErrProtocol, n)
	}
	total := n + uint64(padding(n))
	for total > 0 {
		progress()
		chunk := min(total, 1<<20)
		if _, err := io.CopyN(io.Discard, d.r, int64(chunk)); err != nil {
			return noEOF(err)
		}
		total -= chunk
	}
	return nil
}
