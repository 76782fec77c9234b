package netlab

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
)

// Program is a testing.TB for a program that is not a test, such as the
// attack harness (test/attack): with it the program builds labs with New,
// starts faithif with Lab.StartFaithif and gets the same teardown and
// sweeping as the tests do. Each step of the program runs in Run, which
// stands for t.Run: Fatal ends the step, cleanups run at its end.
//
// Only the methods netlab and a program need are implemented (logging,
// failure, cleanup, name, context); the others panic, and Run reports the
// panic as the step's failure.
type Program struct {
	// TB is never set: it only supplies testing.TB's unexported method.
	testing.TB

	name string
	ctx  context.Context
	out  io.Writer // Log and Logf; nil: discarded

	mu       sync.Mutex
	failed   bool
	errs     []string
	cleanups []func()
}

// programFatal is what FailNow panics with, for Run to recover.
type programFatal struct{}

// NewProgram returns a Program named name whose Context is ctx. Log and
// Logf write to logOut (nil: discarded); Error, Errorf, Fatal and Fatalf
// are collected (see Errors) and also written to logOut.
func NewProgram(ctx context.Context, name string, logOut io.Writer) *Program {
	return &Program{name: name, ctx: ctx, out: logOut}
}

// Run runs fn as one step of the program: a Fatal (FailNow) or a panic in
// fn ends the step, then the cleanups registered with Cleanup run, last
// first. It returns the step's errors joined, or nil if it did not fail.
// Fatal must be called from the goroutine that runs fn, as in a test.
func (p *Program) Run(fn func(p *Program)) error {
	func() {
		defer p.runCleanups()
		defer func() {
			if r := recover(); r != nil {
				if _, ok := r.(programFatal); !ok {
					p.Errorf("panic: %v\n%s", r, debug.Stack())
				}
			}
		}()
		fn(p)
	}()
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.failed {
		return nil
	}
	if len(p.errs) == 0 {
		return fmt.Errorf("%s failed", p.name)
	}
	return fmt.Errorf("%s", strings.Join(p.errs, "; "))
}

func (p *Program) runCleanups() {
	for {
		p.mu.Lock()
		n := len(p.cleanups)
		if n == 0 {
			p.mu.Unlock()
			return
		}
		fn := p.cleanups[n-1]
		p.cleanups = p.cleanups[:n-1]
		p.mu.Unlock()
		func() {
			defer func() {
				if r := recover(); r != nil {
					p.Errorf("cleanup panic: %v", r)
				}
			}()
			fn()
		}()
	}
}

// Errors returns the messages of Error, Errorf, Fatal and Fatalf so far.
func (p *Program) Errors() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.errs...)
}

// Name returns the program's name.
func (p *Program) Name() string { return p.name }

// Context returns the context the program was made with.
func (p *Program) Context() context.Context { return p.ctx }

// Helper does nothing.
func (p *Program) Helper() {}

// Cleanup registers fn to run at the end of Run, last registered first.
func (p *Program) Cleanup(fn func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cleanups = append(p.cleanups, fn)
}

// Log writes its arguments to the log output, as fmt.Sprintln does.
func (p *Program) Log(args ...any) { p.write(strings.TrimSuffix(fmt.Sprintln(args...), "\n")) }

// Logf writes to the log output.
func (p *Program) Logf(format string, args ...any) { p.write(fmt.Sprintf(format, args...)) }

func (p *Program) write(s string) {
	if p.out == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.out, "%s: %s\n", p.name, s)
}

// Output returns the log output (io.Discard if there is none).
func (p *Program) Output() io.Writer {
	if p.out == nil {
		return io.Discard
	}
	return p.out
}

// Fail marks the step failed.
func (p *Program) Fail() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failed = true
}

// Failed reports whether the step has failed.
func (p *Program) Failed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failed
}

// Error records a failure and goes on.
func (p *Program) Error(args ...any) { p.errorMsg(strings.TrimSuffix(fmt.Sprintln(args...), "\n")) }

// Errorf records a failure and goes on.
func (p *Program) Errorf(format string, args ...any) { p.errorMsg(fmt.Sprintf(format, args...)) }

func (p *Program) errorMsg(s string) {
	p.mu.Lock()
	p.failed = true
	p.errs = append(p.errs, s)
	p.mu.Unlock()
	p.write("ERROR: " + s)
}

// FailNow marks the step failed and ends it (from Run's goroutine only).
func (p *Program) FailNow() {
	p.Fail()
	panic(programFatal{})
}

// Fatal records a failure and ends the step.
func (p *Program) Fatal(args ...any) {
	p.Error(args...)
	p.FailNow()
}

// Fatalf records a failure and ends the step.
func (p *Program) Fatalf(format string, args ...any) {
	p.Errorf(format, args...)
	p.FailNow()
}

// Skipped reports false: a program step is never skipped.
func (p *Program) Skipped() bool { return false }

// RemoveBuiltBinary removes the faithif binary Binary built (when
// FAITHIF_BIN is not set), as Main does after the tests. A program calls
// it before it exits.
func RemoveBuiltBinary() {
	if binDir != "" {
		os.RemoveAll(binDir)
	}
}

// DeleteAllLabs deletes every namespace this process created that still
// exists, without the labs' cleanups: the last resort of a program whose
// step hangs past its bound, just before it exits (faithif processes
// started by StartFaithif die with the program). It returns the names.
func DeleteAllLabs() []string {
	labMu.Lock()
	var names []string
	for name := range ours {
		names = append(names, name)
	}
	labMu.Unlock()
	for _, name := range names {
		deleteNS(name)
	}
	return names
}
