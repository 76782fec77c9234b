package e2e

import (
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/faithif/faithif/test/netlab"
)

// openIdleFlow opens a flow to an echo server, checks one echo on it and
// leaves it open and idle.
func openIdleFlow(t *testing.T, lab *netlab.Lab) *net.TCPConn {
	t.Helper()
	ctx := testCtx(t, time.Minute)
	port := echoServer(t, lab)
	c := mustDialServer(t, ctx, lab, port)
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "ping"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo on the flow: %q, %v", buf, err)
	}
	c.SetDeadline(time.Time{})
	return c
}

// expectStillOpen checks that nothing (no data, no FIN, no RST) arrives on c
// for d.
func expectStillOpen(t *testing.T, c *net.TCPConn, d time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	n, err := c.Read(make([]byte, 1))
	c.SetReadDeadline(time.Time{})
	if !isTimeout(err) {
		t.Fatalf("the open flow ended early: read %d bytes, %v; want it still open", n, err)
	}
}

// expectReset waits up to timeout for c to be reset (ECONNRESET on read).
func expectReset(t *testing.T, c *net.TCPConn, timeout time.Duration) {
	t.Helper()
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(timeout))
	n, err := c.Read(make([]byte, 1))
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("client read after %v: %d bytes, %v; want ECONNRESET", time.Since(start).Round(time.Millisecond), n, err)
		return
	}
	t.Logf("client read: %v", err)
}

// waitDraining polls show until the instance says it is draining.
func waitDraining(t *testing.T, lab *netlab.Lab) {
	t.Helper()
	if st := waitStatus(t, lab, 20*time.Second, func(s *netlab.Status) bool { return s.Draining }); !st.Draining {
		t.Errorf("show does not say draining 20 s after the stop request: %s", st.Raw)
	}
}

// TestSigtermDrain sends SIGTERM while a flow is open: the flow may finish
// (the server streams 4 MiB slowly after the signal and the client gets it
// all, then a clean EOF), new connections are refused meanwhile, and the
// process exits 0 as soon as the flow is over, well before the grace period.
func TestSigtermDrain(t *testing.T) {
	lab, f := startLab(t, "--keepfaith", "--grace", "60s")
	ctx := testCtx(t, 2*time.Minute)
	l, port := listenServer(t, lab)

	const (
		size   = 4 << 20
		chunk  = 64 << 10
		pause  = 30 * time.Millisecond // 64 chunks: about 2 s
		seed   = 42
		grace  = 60 * time.Second
		stream = size / chunk * pause
	)
	want := sha256.Sum256(randBytes(seed, size))
	sigSent := make(chan struct{})
	serverDone := make(chan error, 1)
	serve(t, l, func(c *net.TCPConn) {
		select {
		case <-sigSent:
		case <-time.After(30 * time.Second):
			serverDone <- errors.New("no SIGTERM within 30 s")
			return
		}
		c.SetDeadline(time.Now().Add(30 * time.Second))
		src := randReader(seed, size)
		buf := make([]byte, chunk)
		for sent := 0; sent < size; sent += chunk {
			io.ReadFull(src, buf)
			if _, err := c.Write(buf); err != nil {
				serverDone <- err
				return
			}
			time.Sleep(pause)
		}
		c.CloseWrite()
		_, err := io.Copy(io.Discard, c) // until the client closes
		serverDone <- err
	})

	c := mustDialServer(t, ctx, lab, port)
	if st := waitStatus(t, lab, 3*time.Second, func(s *netlab.Status) bool { return s.FlowsOpen == 1 }); st.FlowsOpen != 1 {
		t.Fatalf("flows_open %d, want 1: %s", st.FlowsOpen, st.Raw)
	}
	clientDone := make(chan hashResult, 1)
	go func() {
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		clientDone <- recvHashed(c)
	}()

	f.ExpectExit()
	if err := f.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	sigAt := time.Now()
	close(sigSent)

	// Draining: a new connection is refused at once.
	waitDraining(t, lab)
	start := time.Now()
	nc, err := dialServer(ctx, lab, port)
	d := time.Since(start)
	if err == nil {
		nc.Close()
		t.Errorf("a new connection during the drain succeeded; want ECONNREFUSED")
	} else if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("new connection during the drain: %v after %v; want ECONNREFUSED", err, d)
	} else {
		t.Logf("new connection during the drain: refused after %v", d.Round(time.Microsecond))
	}

	// The open flow gets everything.
	var res hashResult
	select {
	case res = <-clientDone:
	case <-time.After(20 * time.Second):
		t.Fatalf("client still reading 20 s after SIGTERM")
	}
	t.Logf("client got %d bytes in %v after SIGTERM, then %v", res.n, res.at.Sub(sigAt).Round(time.Millisecond), res.err)
	if res.err != nil {
		t.Errorf("client read: %v after %d bytes; want all %d bytes and EOF", res.err, res.n, size)
	}
	if res.n != size || res.sum != want {
		t.Errorf("client got %d bytes (sha256 %x), want %d bytes (sha256 %x)", res.n, res.sum, size, want)
	}
	if res.at.Sub(sigAt) < stream/2 {
		t.Errorf("stream ended %v after SIGTERM, expected about %v: the server did not stream after the signal", res.at.Sub(sigAt), stream)
	}
	select {
	case <-f.Done():
		t.Fatalf("faithif exited before the client closed its end of the flow: %v", f.ExitErr())
	default:
	}

	// The flow ends when the client closes: faithif exits right after.
	c.Close()
	closedAt := time.Now()
	select {
	case err := <-serverDone:
		if err != nil {
			t.Errorf("server: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Errorf("server did not see the client's close within 20 s")
	}
	// A hang guard well short of the grace: an exit within it was not the
	// grace running out (and "resetting flows" below is not logged).
	if !f.Wait(grace / 2) {
		t.Fatalf("faithif still running %v after the last flow ended (grace %v, SIGTERM %v ago)", grace/2, grace, time.Since(sigAt).Round(time.Millisecond))
	}
	t.Logf("faithif exited %v after the flow ended, %v after SIGTERM", time.Since(closedAt).Round(time.Millisecond), time.Since(sigAt).Round(time.Millisecond))
	if err := f.ExitErr(); err != nil {
		t.Errorf("faithif exit: %v, want status 0", err)
	}
	if strings.Contains(f.Stderr(), "resetting flows") {
		t.Errorf("faithif reset flows during a drain that finished in time:\n%s", f.Stderr())
	}
}

// TestSigtermTwice checks that a second SIGTERM during a drain resets the
// open flows and exits at once, instead of waiting out the grace period.
func TestSigtermTwice(t *testing.T) {
	lab, f := startLab(t, "--keepfaith", "--grace", "30s")
	c := openIdleFlow(t, lab)

	f.ExpectExit()
	if err := f.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitDraining(t, lab)
	expectStillOpen(t, c, 300*time.Millisecond)
	select {
	case <-f.Done():
		t.Fatalf("faithif exited on the first SIGTERM with a flow open and 30 s grace: %v", f.ExitErr())
	default:
	}

	if err := f.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if !f.Wait(2 * time.Second) {
		t.Fatalf("faithif still running 2 s after the second SIGTERM")
	}
	t.Logf("faithif exited %v after the second SIGTERM", time.Since(start).Round(time.Millisecond))
	if err := f.ExitErr(); err != nil {
		t.Errorf("faithif exit: %v, want status 0", err)
	}
	expectReset(t, c, 2*time.Second)
}

// TestDestroyGrace checks "faithif destroy --grace 1s" with an idle flow
// open: the flow gets its second, is then reset, and destroy returns.
func TestDestroyGrace(t *testing.T) {
	lab, f := startLab(t, "--keepfaith") // default grace (10 s) on SIGTERM
	c := openIdleFlow(t, lab)

	f.ExpectExit()
	start := time.Now()
	r := lab.Faithif("destroy", "faith0", "--grace", "1s")
	d := time.Since(start)
	t.Logf("destroy --grace 1s: %v, %q", d.Round(time.Millisecond), r.Stdout)
	if r.ExitCode != 0 {
		t.Fatalf("destroy: %s", r)
	}
	if d < 900*time.Millisecond {
		t.Errorf("destroy --grace 1s returned after %v with a flow open: the grace was not given", d)
	}
	if !strings.Contains(r.Stdout, "draining 1 open flows") {
		t.Errorf("destroy stdout %q does not mention the open flow", r.Stdout)
	}
	expectReset(t, c, 10*time.Second)
	if !f.Wait(10 * time.Second) {
		t.Fatalf("faithif still running 10 s after destroy returned")
	}
	if err := f.ExitErr(); err != nil {
		t.Errorf("faithif exit: %v, want status 0", err)
	}
	if hasLink(t, lab, "faith0") {
		t.Errorf("faith0 still exists after destroy")
	}
	if !strings.Contains(f.Stderr(), "resetting flows") {
		t.Errorf("no log line about resetting the flow still open after the grace:\n%s", f.Stderr())
	}
}

// TestDestroyTwice checks that a second destroy during a drain stops the
// instance at once: the open flow is reset and both destroys return.
func TestDestroyTwice(t *testing.T) {
	lab, f := startLab(t, "--keepfaith")
	c := openIdleFlow(t, lab)

	f.ExpectExit()
	first := make(chan netlab.Result, 1)
	go func() { first <- lab.Faithif("destroy", "faith0", "--grace", "30s") }()
	waitDraining(t, lab)
	expectStillOpen(t, c, 300*time.Millisecond)

	start := time.Now()
	r := lab.Faithif("destroy", "faith0", "--grace", "30s")
	d := time.Since(start)
	t.Logf("second destroy: %v, %s", d.Round(time.Millisecond), r)
	if r.ExitCode != 0 {
		t.Errorf("second destroy: %s, want exit 0", r)
	}
	// Had it waited for the 30 s grace, netlab.CommandTimeout (20 s) would
	// have ended it with a non-zero exit, checked above.
	select {
	case r1 := <-first:
		t.Logf("first destroy: %s", r1)
		if r1.ExitCode != 0 {
			t.Errorf("first destroy: %s, want exit 0", r1)
		}
	case <-time.After(15 * time.Second):
		t.Errorf("first destroy (grace 30 s) still waiting 15 s after the second one")
	}
	expectReset(t, c, 10*time.Second)
	if !f.Wait(10 * time.Second) {
		t.Fatalf("faithif still running after both destroys")
	}
	if err := f.ExitErr(); err != nil {
		t.Errorf("faithif exit: %v, want status 0", err)
	}
}
