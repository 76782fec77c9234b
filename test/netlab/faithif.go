package netlab

import (
	"bytes"
	"context"
	"encoding/json"
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
	bin := Binary(t)
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

// Discarded holds the packets_discarded counters of "faithif show --json".
type Discarded struct {
	// Keepfaith counts packets dropped because keepfaith was 0.
	Keepfaith uint64 `json:"keepfaith"`
	// NotTCP counts packets dropped because they were not TCP.
	NotTCP uint64 `json:"not_tcp"`
	// Malformed counts packets dropped because they could not be parsed.
	Malformed uint64 `json:"malformed"`
	// NotIPv6 counts packets dropped because they were not IPv6.
	NotIPv6 uint64 `json:"not_ipv6"`
	// ICMPv6Other counts ICMPv6 messages dropped because they are not
	// errors for a FAITH flow (echo requests, neighbor discovery...).
	ICMPv6Other uint64 `json:"icmpv6_other"`
	// BadSource counts packets dropped for their source address
	// (unspecified, loopback, multicast, IPv4-mapped, IPv4-compatible).
	BadSource uint64 `json:"bad_source"`
}

// Status is the JSON object printed by "faithif show faith0 --json". Fields
// the product adds beyond these are kept in Raw only.
type Status struct {
	// Name is the interface name, e.g. faith0.
	Name string `json:"name"`
	// PID is the process id of the instance.
	PID int `json:"pid"`
	// Routes are the prefixes routed to the interface by --route.
	Routes []string `json:"routes"`
	// Rules is the access file given with --config.
	Rules string `json:"rules"`
	// RuleCount is the number of access rules in force.
	RuleCount int `json:"rule_count"`
	// Draining is true while the instance drains before stopping.
	Draining bool `json:"draining"`
	// Prefixes are the FAITH prefixes of the interface.
	Prefixes []string `json:"prefixes"`
	// MTU is the interface MTU.
	MTU int `json:"mtu"`
	// Keepfaith is the capture switch net.inet6.ip6.keepfaith.
	Keepfaith bool `json:"keepfaith"`
	// UptimeSeconds is how long the instance has been running.
	UptimeSeconds float64 `json:"uptime_seconds"`
	// FlowsOpen is the number of flows being relayed now.
	FlowsOpen uint64 `json:"flows_open"`
	// FlowsTotal counts every captured flow (accepted, refused or denied).
	FlowsTotal uint64 `json:"flows_total"`
	// FlowsAccepted counts flows whose IPv4 connection succeeded.
	FlowsAccepted uint64 `json:"flows_accepted"`
	// FlowsRefused counts flows refused (IPv4 connect refused or failed,
	// forbidden destination).
	FlowsRefused uint64 `json:"flows_refused"`
	// FlowsDenied counts flows denied by the access rules.
	FlowsDenied uint64 `json:"flows_denied"`
	// BytesIn counts relayed payload bytes from client to server.
	BytesIn uint64 `json:"bytes_in"`
	// BytesOut counts relayed payload bytes from server to client.
	BytesOut uint64 `json:"bytes_out"`
	// PacketsIn counts packets read from the interface.
	PacketsIn uint64 `json:"packets_in"`
	// PacketsDiscarded counts dropped packets by reason.
	PacketsDiscarded Discarded `json:"packets_discarded"`
	// PacketsOut counts packets written to the interface.
	PacketsOut uint64 `json:"packets_out"`
	// FlowsLimited counts flows refused by a per-client limit.
	FlowsLimited uint64 `json:"flows_limited"`
	// FlowsFDLimit counts flows refused because faithif ran out of file
	// descriptors, and FDLimit is its open-files limit.
	FlowsFDLimit uint64 `json:"flows_fd_limit"`
	FDLimit      uint64 `json:"fd_limit"`
	// Clients is the number of client /64s with flows open or being set up.
	Clients int `json:"clients"`
	// MaxFlowsPerClient and MaxHandshakesPerClient are the per-client
	// limits in force.
	MaxFlowsPerClient      int `json:"max_flows_per_client"`
	MaxHandshakesPerClient int `json:"max_handshakes_per_client"`
	// HandshakesInFlight is the number of flows waiting for their IPv4
	// connection.
	HandshakesInFlight int64 `json:"handshakes_in_flight"`
	// ICMPErrorsSent counts flows refused with an ICMPv6 error.
	ICMPErrorsSent uint64 `json:"icmp6_errors_sent"`
	// ICMPRateLimited counts ICMPv6 errors suppressed by the rate limit.
	ICMPRateLimited uint64 `json:"icmp6_errors_rate_limited"`
	// ICMPv6In counts inbound ICMPv6 messages by type name
	// ("packet_too_big", "echo_request"...).
	ICMPv6In map[string]uint64 `json:"icmp6_in"`

	// Raw is the unparsed output.
	Raw string `json:"-"`
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
	st := &Status{Raw: strings.TrimSpace(r.Stdout)}
	if err := json.Unmarshal([]byte(r.Stdout), st); err != nil {
		return nil, fmt.Errorf("faithif show %s --json: bad JSON %q: %w", name, r.Stdout, err)
	}
	return st, nil
}

// List runs "faithif list --json" in the router and parses it. Raw of each
// element is left empty; the returned string is the whole output.
func (l *Lab) List() ([]Status, string, error) {
	r := l.Faithif("list", "--json")
	if r.Err != nil || r.ExitCode != 0 {
		return nil, "", fmt.Errorf("faithif list --json: %s", r)
	}
	var all []Status
	if err := json.Unmarshal([]byte(r.Stdout), &all); err != nil {
		return nil, r.Stdout, fmt.Errorf("faithif list --json: bad JSON %q: %w", r.Stdout, err)
	}
	return all, r.Stdout, nil
}
