package netlab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/faithif/faithif/faithif/status"
)

// ReadyTimeout is how long StartFaithif waits for faithif to become ready.
const ReadyTimeout = 10 * time.Second

// CommandTimeout bounds every faithif subcommand run by Lab.Faithif.
const CommandTimeout = 20 * time.Second

var (
	binOnce sync.Once
	binPath string
	binErr  error
	binDir  string // temporary build directory, removed by Main
)

// Main runs the tests of a package that uses netlab and then removes the
// faithif binary built for them. Use it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(netlab.Main(m)) }
func Main(m *testing.M) int {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	return code
}

// Binary returns the path of the faithif binary under test: $FAITHIF_BIN if
// set, otherwise a binary built once per test process with
// "go build ./cmd/faithif" from the module root into a temporary directory.
// It fails the test if there is no binary.
func Binary(t testing.TB) string {
	t.Helper()
	p, err := binary()
	if err != nil {
		t.Fatalf("netlab: faithif binary: %v", err)
	}
	return p
}

func binary() (string, error) {
	binOnce.Do(func() { binPath, binErr = findOrBuild() })
	return binPath, binErr
}

func findOrBuild() (string, error) {
	if p := os.Getenv("FAITHIF_BIN"); p != "" {
		abs, err := filepath.Abs(p)
		if err != nil {
			return "", err
		}
		if st, err := os.Stat(abs); err != nil {
			return "", fmt.Errorf("FAITHIF_BIN: %w", err)
		} else if st.IsDir() || st.Mode()&0o111 == 0 {
			return "", fmt.Errorf("FAITHIF_BIN=%s is not an executable file", abs)
		}
		return abs, nil
	}
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	goBin, err := goCommand()
	if err != nil {
		return "", err
	}
	dir, err := mkdirTemp("bin")
	if err != nil {
		return "", err
	}
	// World-readable, so the binary can also be run as an unprivileged user.
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", err
	}
	binDir = dir
	out := filepath.Join(dir, "faithif")
	cmd := exec.Command(goBin, "build", "-o", out, "./cmd/faithif")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/faithif in %s: %w\n%s", root, err, b)
	}
	return out, nil
}

// ModuleRoot returns the directory holding go.mod, searching upward from the
// working directory.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}

func goCommand() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	for _, p := range []string{filepath.Join(runtime.GOROOT(), "bin", "go"), "/usr/local/go/bin/go"} {
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return "", errors.New("go command not found (not on PATH, not in GOROOT, not /usr/local/go/bin/go)")
}

// Buffer is a goroutine-safe byte buffer that collects a process's output.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p to the buffer.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Faithif is one "faithif create ... -f" process running in a lab's router
// namespace.
type Faithif struct {
	// Args are the arguments given to the faithif binary.
	Args []string

	cmd      *exec.Cmd
	stdout   Buffer
	stderr   Buffer
	done     chan struct{}
	waitErr  error
	expected atomic.Bool // an exit now is not a crash
}

// ExpectExit tells the lab that faithif is about to exit (e.g. because the
// test runs "faithif destroy"), so the exit is not reported as a crash.
// Stop calls it itself.
func (f *Faithif) ExpectExit() { f.expected.Store(true) }

// Signal sends sig to the faithif process.
func (f *Faithif) Signal(sig os.Signal) error { return f.cmd.Process.Signal(sig) }

// Pid returns the process id of faithif.
func (f *Faithif) Pid() int { return f.cmd.Process.Pid }

// Stderr returns everything faithif has logged so far.
func (f *Faithif) Stderr() string { return f.stderr.String() }

// Stdout returns everything faithif has written to stdout so far.
func (f *Faithif) Stdout() string { return f.stdout.String() }

// Done is closed when the process has exited.
func (f *Faithif) Done() <-chan struct{} { return f.done }

// ExitErr returns the error from waiting for the process (nil for exit
// status 0). Only meaningful after Done is closed.
func (f *Faithif) ExitErr() error {
	<-f.done
	return f.waitErr
}

// Wait waits up to timeout for the process to exit and reports whether it
// did.
func (f *Faithif) Wait(timeout time.Duration) bool {
	select {
	case <-f.done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// Stop sends SIGTERM, waits up to 5 s, then sends SIGKILL, and returns the
// process's exit error (nil for a clean exit). Stopping an exited process
// just returns its exit error.
func (f *Faithif) Stop() error {
	select {
	case <-f.done:
		return f.waitErr
	default:
	}
	f.ExpectExit()
	f.cmd.Process.Signal(syscall.SIGTERM)
	if f.Wait(5 * time.Second) {
		return f.waitErr
	}
	f.cmd.Process.Kill()
	<-f.done
	return fmt.Errorf("did not exit within 5 s of SIGTERM, killed: %v", f.waitErr)
}

// WaitLog waits up to timeout for a stderr line for which match returns
// true, and returns that line.
func (f *Faithif) WaitLog(timeout time.Duration, match func(line string) bool) (string, bool) {
	deadline := time.Now().Add(timeout)
	for {
		for _, line := range strings.Split(f.Stderr(), "\n") {
			if match(line) {
				return line, true
			}
		}
		if time.Now().After(deadline) {
			return "", false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func isReadyLine(line string) bool {
	return strings.Contains(line, "msg=ready") || strings.Contains(line, `"msg":"ready"`)
}

// StartFaithif starts
//
//	ip netns exec ROUTER faithif create faith0 --prefix 2001:db8:46::/96 -f ARGS...
//
// with the lab's FAITHIF_RUN_DIR, waits (up to ReadyTimeout) until it logs
// msg=ready or "faithif show faith0" succeeds, then routes FaithPrefix to
// faith0 in the router. The process is stopped by the lab's cleanup if the
// test does not stop it. It fails the test if faithif exits or does not
// become ready in time.
func (l *Lab) StartFaithif(t testing.TB, args ...string) *Faithif {
	t.Helper()
	return l.startFaithifBin(t, Binary(t), args...)
}

// StartFaithifPerf is StartFaithif on the build whose speed a test
// measures: $FAITHIF_PERF_BIN if set (make test runs the suite on a -race
// -cover build, whose relay is several times slower and shares the CPU
// differently, and points this at the plain one), else the same binary.
func (l *Lab) StartFaithifPerf(t testing.TB, args ...string) *Faithif {
	t.Helper()
	bin := Binary(t)
	if p := os.Getenv("FAITHIF_PERF_BIN"); p != "" {
		bin = p
	}
	return l.startFaithifBin(t, bin, args...)
}

func (l *Lab) startFaithifBin(t testing.TB, bin string, args ...string) *Faithif {
	t.Helper()
	full := append([]string{"create", FaithIf, "--prefix", FaithPrefix, "-f"}, args...)
	f := &Faithif{Args: full, done: make(chan struct{})}
	cmd := exec.Command("ip", append([]string{"netns", "exec", l.Router.Name, bin}, full...)...)
	cmd.Env = append(os.Environ(), l.Env()...)
	cmd.Stdout = &f.stdout
	cmd.Stderr = &f.stderr
	// Dies with the test process even if the test binary is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	f.cmd = cmd
	if err := cmd.Start(); err != nil {
		t.Fatalf("netlab: start faithif: %v", err)
	}
	go func() {
		f.waitErr = cmd.Wait()
		close(f.done)
	}()
	l.mu.Lock()
	l.procs = append(l.procs, f)
	l.cur = f
	l.mu.Unlock()

	start := time.Now()
	deadline := start.Add(ReadyTimeout)
	nextShow := start.Add(500 * time.Millisecond)
	ready := false
	for !ready {
		select {
		case <-f.done:
			t.Fatalf("netlab: faithif %s exited before ready: %v\nstderr:\n%s", strings.Join(full, " "), f.waitErr, f.Stderr())
		default:
		}
		for _, line := range strings.Split(f.Stderr(), "\n") {
			if isReadyLine(line) {
				ready = true
				break
			}
		}
		if !ready && time.Now().After(nextShow) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			if r := l.FaithifContext(ctx, "show", FaithIf); r.ExitCode == 0 {
				ready = true
			}
			cancel()
			nextShow = time.Now().Add(500 * time.Millisecond)
		}
		if !ready {
			if time.Now().After(deadline) {
				t.Fatalf("netlab: faithif not ready after %v (no msg=ready, show failing)\nstderr:\n%s", ReadyTimeout, f.Stderr())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	t.Logf("netlab: faithif ready in %v (pid %d, router %s)", time.Since(start).Round(time.Millisecond), f.Pid(), l.Router.Name)
	// Report a crash as soon as it happens: the test itself will usually
	// only see timeouts. The lab's cleanup stops the process before the
	// lab's test ends, so l.t is still running when this fires.
	go func() {
		<-f.done
		if !f.expected.Load() {
			l.t.Errorf("netlab: faithif (pid %d) exited unexpectedly: %v\nstderr:\n%s", f.Pid(), f.waitErr, tail(f.Stderr(), 100))
		}
	}()
	if _, err := l.Router.IP("-6", "route", "replace", FaithPrefix, "dev", FaithIf); err != nil {
		t.Fatalf("netlab: route %s to %s: %v", FaithPrefix, FaithIf, err)
	}
	return f
}

// Current returns the faithif process most recently started by StartFaithif,
// or nil.
func (l *Lab) Current() *Faithif {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cur
}

// Result is the outcome of one faithif subcommand.
type Result struct {
	// Stdout and Stderr are the command's output.
	Stdout, Stderr string
	// ExitCode is the exit status, or -1 if the command could not be started
	// or was killed (then Err says why).
	ExitCode int
	// Err is nil when the command ran and exited (with any status).
	Err error
}

// String summarises the result for test messages.
func (r Result) String() string {
	s := fmt.Sprintf("exit %d, stdout %q, stderr %q", r.ExitCode, r.Stdout, r.Stderr)
	if r.Err != nil {
		s += ", error: " + r.Err.Error()
	}
	return s
}

// Faithif runs "faithif ARGS..." in the router namespace with the lab's
// FAITHIF_RUN_DIR and returns its output and exit status. It is bounded by
// CommandTimeout.
func (l *Lab) Faithif(args ...string) Result {
	ctx, cancel := context.WithTimeout(context.Background(), CommandTimeout)
	defer cancel()
	return l.FaithifContext(ctx, args...)
}

// FaithifIn is Faithif run in the directory dir (relative paths in its
// arguments are taken from there).
func (l *Lab) FaithifIn(dir string, args ...string) Result {
	ctx, cancel := context.WithTimeout(context.Background(), CommandTimeout)
	defer cancel()
	bin, err := binary()
	if err != nil {
		return Result{ExitCode: -1, Err: err}
	}
	cmd := l.Router.Command(ctx, l.Env(), bin, args...)
	cmd.Dir = dir
	return RunCommand(cmd)
}

// FaithifContext is Faithif with a caller-supplied context.
func (l *Lab) FaithifContext(ctx context.Context, args ...string) Result {
	bin, err := binary()
	if err != nil {
		return Result{ExitCode: -1, Err: err}
	}
	return RunCommand(l.Router.Command(ctx, l.Env(), bin, args...))
}

// RunCommand runs cmd, capturing stdout and stderr separately.
func RunCommand(cmd *exec.Cmd) Result {
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := Result{Stdout: stdout.String(), Stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
		r.ExitCode = 0
	case errors.As(err, &ee) && ee.Exited():
		r.ExitCode = ee.ExitCode()
	default:
		r.ExitCode = -1
		r.Err = err
	}
	return r
}

// Status is what "faithif show NAME --json" prints: the product's own
// status.Status, decoded strictly (a key missing or unknown is an error, so a
// renamed counter cannot read as 0), with the output it was read from.
type Status struct {
	status.Status
	// Raw is the unparsed output.
	Raw string
}

// Show runs "faithif show faith0 --json" in the router and parses it.
func (l *Lab) Show() (*Status, error) {
	return l.ShowIf(FaithIf)
}

// ShowIf runs "faithif show NAME --json" in the router and parses it.
func (l *Lab) ShowIf(name string) (*Status, error) {
	r := l.Faithif("show", name, "--json")
	if r.Err != nil || r.ExitCode != 0 {
		return nil, fmt.Errorf("faithif show %s --json: %s", name, r)
	}
	st, err := status.Decode([]byte(r.Stdout))
	if err != nil {
		return nil, fmt.Errorf("faithif show %s --json: %w in %q", name, err, r.Stdout)
	}
	return &Status{Status: *st, Raw: strings.TrimSpace(r.Stdout)}, nil
}

// List runs "faithif list --json" in the router and parses it. Raw of each
// element is left empty; the returned string is the whole output.
func (l *Lab) List() ([]Status, string, error) {
	r := l.Faithif("list", "--json")
	if r.Err != nil || r.ExitCode != 0 {
		return nil, "", fmt.Errorf("faithif list --json: %s", r)
	}
	list, err := status.DecodeList([]byte(r.Stdout))
	if err != nil {
		return nil, r.Stdout, fmt.Errorf("faithif list --json: %w in %q", err, r.Stdout)
	}
	all := make([]Status, len(list))
	for i := range list {
		all[i].Status = list[i]
	}
	return all, r.Stdout, nil
}
