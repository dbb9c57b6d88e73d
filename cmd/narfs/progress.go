package main

import (
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// progress prints one line per path to out and, when stderr is a
// terminal, keeps a progress bar (of bytes, or of paths) below them. Safe for concurrent use.
type progress struct {
	mu  sync.Mutex // protects the fields below
	out io.Writer
	bar *progressbar.ProgressBar // nil when stderr is not a terminal
}

func newProgress(total int64, what string, bytes bool) *progress {
	p := &progress{out: os.Stdout}
	if term.IsTerminal(int(os.Stderr.Fd())) {
		p.bar = progressbar.NewOptions64(total,
			progressbar.OptionSetWriter(os.Stderr),
			progressbar.OptionSetDescription(what),
			progressbar.OptionShowBytes(bytes),
			progressbar.OptionShowCount(),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionThrottle(100e6),
			progressbar.OptionClearOnFinish(),
			progressbar.OptionFullWidth(),
		)
	}
	return p
}

// add advances the bar by n bytes (or paths).
func (p *progress) add(n int64) {
	if p.bar == nil || n == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.bar.Add64(n)
}

// linef prints a line above the bar, its control characters escaped
// (escapeLine): the lines carry what caches said.
func (p *progress) linef(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		p.bar.Clear()
	}
	fmt.Fprintln(p.out, escapeLine(fmt.Sprintf(format, args...)))
	if p.bar != nil {
		p.bar.RenderBlank()
	}
}

func (p *progress) finish() {
	if p.bar != nil {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.bar.Finish()
	}
}

// set moves the bar to n bytes (or paths).
func (p *progress) set(n int64) {
	if p.bar == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.bar.Set64(n)
}

// describe changes the text before the bar.
func (p *progress) describe(what string) {
	if p.bar == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.bar.Describe(what)
}
