package netlab

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// extraNSRE is what AddNamespace accepts as a suffix: one lowercase letter
// that New does not use itself (c, r and s are the client, router and
// server), so that Sweep recognises the namespace as a lab's.
var extraNSRE = regexp.MustCompile(`^[a-bd-qt-z]$`)

// AddNamespace adds one more network namespace, named ID+suffix, to the lab:
// loopback up, nothing else. suffix is one lowercase letter other than c, r
// and s. The namespace is deleted with the lab, and swept like the others if
// the test process dies. Links between it and the lab's other namespaces
// are the test's to make (create veth pairs inside a lab namespace, never in
// the test's own).
func (l *Lab) AddNamespace(suffix string) (*Namespace, error) {
	if !extraNSRE.MatchString(suffix) {
		return nil, fmt.Errorf("netlab: namespace suffix %q: want one lowercase letter other than c, r and s", suffix)
	}
	for _, ns := range l.nss {
		if ns.Name == l.ID+suffix {
			return nil, fmt.Errorf("netlab: namespace %s already exists in the lab", ns.Name)
		}
	}
	return l.addNS(suffix)
}

// StartSpec says what Lab.Start runs.
type StartSpec struct {
	// NS is the namespace the command runs in (through "ip netns exec");
	// nil means the lab's router.
	NS *Namespace
	// Env entries (KEY=VALUE) are added to the test process's environment.
	// Nil means the lab's (Lab.Env); give an empty, non-nil slice for none.
	Env []string
	// Argv is the command: Argv[0] is the program, found on PATH if it has
	// no slash.
	Argv []string
	// Ready, if set, is called with each line the process writes to
	// standard error until it returns true; Start returns then. Nil: Start
	// returns as soon as the process is started.
	Ready func(line string) bool
	// ReadyTimeout bounds the wait for Ready (default ReadyTimeout).
	ReadyTimeout time.Duration
}

// Start runs spec.Argv in a lab namespace as a long-running process of the
// lab: its output is collected, it is killed if the test process dies, it is
// stopped (SIGTERM, then SIGKILL after 5 s) by the lab's teardown if the test
// does not stop it, and an exit the test did not announce with ExpectExit
// fails the test. Start waits for spec.Ready and fails the test if the
// process exits first or is not ready in time.
//
// The returned Faithif is any process, not necessarily faithif (e.g. a
// wrapper that execs faithif, which then keeps the wrapper's pid).
func (l *Lab) Start(t testing.TB, spec StartSpec) *Faithif {
	t.Helper()
	if len(spec.Argv) == 0 {
		t.Fatalf("netlab: Start: empty command")
	}
	ns := spec.NS
	if ns == nil {
		ns = l.Router
	}
	env := spec.Env
	if env == nil {
		env = l.Env()
	}
	f := &Faithif{Args: spec.Argv, done: make(chan struct{})}
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns.Name}, spec.Argv...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout = &f.stdout
	cmd.Stderr = &f.stderr
	// Dies with the test process even if the test binary is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	f.cmd = cmd
	if err := cmd.Start(); err != nil {
		t.Fatalf("netlab: start %s in %s: %v", strings.Join(spec.Argv, " "), ns.Name, err)
	}
	go func() {
		f.waitErr = cmd.Wait()
		close(f.done)
	}()
	l.mu.Lock()
	l.procs = append(l.procs, f)
	l.mu.Unlock()

	if spec.Ready != nil {
		timeout := spec.ReadyTimeout
		if timeout <= 0 {
			timeout = ReadyTimeout
		}
		start := time.Now()
		deadline := start.Add(timeout)
		for ready := false; !ready; {
			select {
			case <-f.done:
				t.Fatalf("netlab: %s exited before ready: %v\nstderr:\n%s\nstdout:\n%s", strings.Join(spec.Argv, " "), f.waitErr, f.Stderr(), f.Stdout())
			default:
			}
			for _, line := range strings.Split(f.Stderr(), "\n") {
				if spec.Ready(line) {
					ready = true
					break
				}
			}
			if !ready {
				if time.Now().After(deadline) {
					t.Fatalf("netlab: %s not ready after %v\nstderr:\n%s", strings.Join(spec.Argv, " "), timeout, f.Stderr())
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		t.Logf("netlab: %s ready in %v (pid %d, %s)", spec.Argv[0], time.Since(start).Round(time.Millisecond), f.Pid(), ns.Name)
	}
	go func() {
		<-f.done
		if !f.expected.Load() {
			l.t.Errorf("netlab: %s (pid %d) exited unexpectedly: %v\nstderr:\n%s", strings.Join(spec.Argv, " "), f.Pid(), f.waitErr, tail(f.Stderr(), 100))
		}
	}()
	return f
}

// IsApplianceReady reports whether a log line of "faithif run" (text or
// JSON) says that every interface is up and relaying.
func IsApplianceReady(line string) bool {
	return strings.Contains(line, `msg="appliance ready"`) || strings.Contains(line, `"msg":"appliance ready"`)
}

// StartRun starts "faithif run ARGS..." in the router with the lab's
// FAITHIF_RUN_DIR and waits until it logs that the appliance is ready. Like
// StartFaithif, the process is stopped by the lab's teardown, and an exit
// not announced with ExpectExit fails the test. Routes are the
// configuration's business: StartRun adds none.
func (l *Lab) StartRun(t testing.TB, args ...string) *Faithif {
	t.Helper()
	bin := Binary(t)
	return l.Start(t, StartSpec{Argv: append([]string{bin, "run"}, args...), Ready: IsApplianceReady})
}

// WaitLinkUp waits up to timeout until the namespace's link dev has carrier
// (operstate UP) and, if it has IPv6, a link-local address that is not
// tentative.
func (n *Namespace) WaitLinkUp(dev string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		out, err := n.IP("-o", "link", "show", "dev", dev)
		ok := err == nil && strings.Contains(out, "state UP") && !strings.Contains(out, "NO-CARRIER")
		if ok {
			var a string
			a, err = n.IP("-o", "-6", "addr", "show", "dev", dev, "scope", "link")
			ok = err == nil && !strings.Contains(a, "tentative")
			if a != "" {
				out = a
			}
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("netlab: link %s in %s not ready after %v: %s %v", dev, n.Name, timeout, strings.TrimSpace(out), err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// HTTPClient returns an HTTP client whose connections are made from the
// namespace (each socket is created in it): http://127.0.0.1:PORT/ reaches
// a server on the namespace's loopback. Keep-alives are off, so that no
// connection outlives a request.
func (n *Namespace) HTTPClient() *http.Client {
	d := &net.Dialer{}
	return &http.Client{
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return n.DialWith(ctx, d, network, addr)
			},
			DisableKeepAlives: true,
			Proxy:             nil,
		},
		Timeout: 10 * time.Second,
	}
}

// HTTPGet fetches url from inside the namespace and returns the status
// code and the body.
func (n *Namespace) HTTPGet(ctx context.Context, url string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := n.HTTPClient().Do(req)
	if err != nil {
		return 0, "", fmt.Errorf("GET %s in %s: %w", url, n.Name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, string(b), fmt.Errorf("GET %s in %s: read body: %w", url, n.Name, err)
	}
	return resp.StatusCode, string(b), nil
}
