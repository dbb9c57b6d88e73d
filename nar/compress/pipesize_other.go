//go:build !linux

package compress

import "os"

// setPipeSize is a no-op where pipe buffers cannot be resized.
func setPipeSize(*os.File) {}
