package compress

// Lock order: toolReader.feedMu and cappedBuffer.mu are leaves, never
// held together: wait copies feedErr out and unlocks before it reads the
// child's stderr buffer.

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
)

// xzMTMemlimit caps the memory of xz's threaded decoder; xz lowers its
// thread count to fit and never refuses a file for it. Each thread holds a
// block's input and output, so Nix-style 24 MiB blocks need about 50 MiB a
// thread: 128 MiB keeps two threads, whatever the core count.
const xzMTMemlimit = "128MiB"

// xzTool returns the xz command line for a format xz reads. -T0 decodes
// the blocks of multi-block files (Nix's parallel-compression) in parallel;
// single-block files decode on one thread as with plain xz -dc.
func xzTool(format string) func() []string {
	return func() []string {
		argv := []string{"xz", "-dc", "--format=" + format}
		if xzHasMTDecoder() {
			argv = append(argv, "-T0", "--memlimit-mt-decompress="+xzMTMemlimit)
		}
		return argv
	}
}

// parseXZVersion returns the number in the XZ_VERSION=XYYYZZZS line of
// xz --robot --version (major X, minor YYY, patch ZZZ, stability S).
func parseXZVersion(out string) (int, bool) {
	for line := range strings.Lines(out) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "XZ_VERSION="); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				return 0, false
			}
			return n, true
		}
	}
	return 0, false
}

// fixedTool returns a constant command line.
func fixedTool(argv ...string) func() []string {
	return func() []string { return argv }
}

// xzHasMTDecoder reports whether the installed xz decodes with threads
// (5.4.0 and later); older ones reject --memlimit-mt-decompress.
var xzHasMTDecoder = sync.OnceValue(func() bool {
	out, err := exec.Command("xz", "--robot", "--version").Output()
	if err != nil {
		return false
	}
	v, ok := parseXZVersion(string(out))
	return ok && v >= 50040000
})

// maxStderr bounds how much of a tool's stderr is kept for the error.
const maxStderr = 4 << 10

// toolReader streams the stdout of a decompressor child process whose
// stdin is fed from the input by a goroutine.
type toolReader struct {
	name   string // argv[0], for errors
	cmd    *exec.Cmd
	stdout *os.File // read end of the child's stdout
	stderr *cappedBuffer

	waitOnce sync.Once
	waitErr  error // set by waitOnce

	feedMu  sync.Mutex
	feedErr error // protected by feedMu: the input reader's error, if any

	err error // sticky Read error; errClosed after Close
}

// pipeSize is asked of the kernel for both pipes: 16 times the default, so
// a fast decoder and its reader trade fewer, larger chunks.
const pipeSize = 1 << 20

// startTool starts argv and returns its reader, or an error if the tool is
// missing or cannot start; r has not been read from in that case.
func startTool(argv []string, r io.Reader) (*toolReader, error) {
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path, argv[1:]...)
	t := &toolReader{name: argv[0], cmd: cmd, stderr: &cappedBuffer{max: maxStderr}}
	cmd.Stderr = t.stderr

	// Our own pipes rather than exec's: their size can be set, and Wait
	// does not close them under a concurrent Read.
	var toClose []*os.File // the child's ends, and ours on failure
	defer func() {
		for _, f := range toClose {
			f.Close()
		}
	}()
	var stdinW *os.File
	if f, ok := r.(*os.File); ok {
		// A file is handed to the child as is: no copying, and no
		// goroutine. The child advances the shared offset.
		cmd.Stdin = f
	} else {
		stdinR, w, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		setPipeSize(w)
		toClose = append(toClose, stdinR)
		cmd.Stdin, stdinW = stdinR, w
	}
	stdoutR, stdoutW, err := os.Pipe()
	if err != nil {
		if stdinW != nil {
			stdinW.Close()
		}
		return nil, err
	}
	setPipeSize(stdoutW)
	toClose = append(toClose, stdoutW)
	cmd.Stdout, t.stdout = stdoutW, stdoutR
	if err := cmd.Start(); err != nil {
		toClose = append(toClose, stdoutR)
		if stdinW != nil {
			toClose = append(toClose, stdinW)
		}
		return nil, err
	}
	if stdinW != nil {
		go t.feed(stdinW, r)
	}
	return t, nil
}

// feed copies the input to the child's stdin and closes it, so the child
// sees the end of its input. A write error means the child is gone (it
// finished early, failed or was killed); Read reports that from its exit.
func (t *toolReader) feed(stdin *os.File, r io.Reader) {
	defer stdin.Close()
	// Hide ReaderFrom/WriterTo: the buffer size matters at these rates.
	_, err := io.CopyBuffer(struct{ io.Writer }{stdin}, readOnly{r}, make([]byte, 256<<10))
	var rerr *readError
	if errors.As(err, &rerr) {
		t.feedMu.Lock()
		t.feedErr = rerr.err
		t.feedMu.Unlock()
	}
}

// readOnly tags errors from the input so feed can tell them from write
// errors.
type readOnly struct{ r io.Reader }

type readError struct{ err error }

func (e *readError) Error() string { return e.err.Error() }

func (ro readOnly) Read(p []byte) (int, error) {
	n, err := ro.r.Read(p)
	if err != nil && err != io.EOF {
		err = &readError{err}
	}
	return n, err
}

func (t *toolReader) Read(p []byte) (int, error) {
	if t.err != nil {
		return 0, t.err
	}
	n, err := t.stdout.Read(p)
	if err == nil {
		return n, nil
	}
	// stdout ended: the child has exited or is exiting (or Close ran
	// concurrently); its status decides between EOF and an error.
	if werr := t.wait(); werr != nil {
		t.err = werr
		return n, werr
	}
	if err != io.EOF {
		t.err = fmt.Errorf("%s: reading output: %w", t.name, err)
		return n, t.err
	}
	t.err = io.EOF
	return n, io.EOF
}

// wait reaps the child once and returns why the stream failed, or nil if
// it ended cleanly.
func (t *toolReader) wait() error {
	t.waitOnce.Do(func() { t.waitErr = t.cmd.Wait() })
	// An input error makes the child fail with "unexpected end of input";
	// the input's own error says more. feed records it before closing
	// stdin, so it is visible once the child has exited.
	t.feedMu.Lock()
	ferr := t.feedErr
	t.feedMu.Unlock()
	if ferr != nil {
		return fmt.Errorf("%s: reading input: %w", t.name, ferr)
	}
	if t.waitErr == nil {
		return nil
	}
	if msg := strings.TrimSpace(t.stderr.String()); msg != "" {
		return fmt.Errorf("%s: %w: %s", t.name, t.waitErr, msg)
	}
	return fmt.Errorf("%s: %w", t.name, t.waitErr)
}

// Close kills the child if it still runs and reaps it.
func (t *toolReader) Close() error {
	if t.err == errClosed {
		return nil
	}
	t.err = errClosed
	// Kill fails harmlessly if the child has already exited; Go's pidfd
	// use makes it safe against pid reuse after Wait.
	_ = t.cmd.Process.Kill()
	t.waitOnce.Do(func() { t.waitErr = t.cmd.Wait() })
	return t.stdout.Close()
}

// cappedBuffer keeps the first max bytes written to it and drops the rest.
type cappedBuffer struct {
	mu  sync.Mutex // protects the fields below
	max int
	buf []byte
}

func (c *cappedBuffer) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if room := c.max - len(c.buf); room > 0 {
		c.buf = append(c.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (c *cappedBuffer) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return string(c.buf)
}
