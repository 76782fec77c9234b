package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/faithif/faithif/test/netlab"
)

func TestMain(m *testing.M) { os.Exit(netlab.Main(m)) }

// startLab builds a lab and starts faithif in it with args (after
// "create faith0 --prefix 2001:db8:46::/96 -f").
func startLab(t *testing.T, args ...string) (*netlab.Lab, *netlab.Faithif) {
	t.Helper()
	lab := netlab.New(t)
	f := lab.StartFaithif(t, args...)
	return lab, f
}

// testCtx returns a context that ends after d or at the test's deadline,
// whichever is first.
func testCtx(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	if dl, ok := t.Deadline(); ok {
		ctx2, cancel2 := context.WithDeadline(ctx, dl.Add(-5*time.Second))
		t.Cleanup(cancel2)
		ctx = ctx2
	}
	t.Cleanup(cancel)
	return ctx
}

// listenServer opens a TCP listener on the server's IPv4 address (random
// port) and returns it with its port.
func listenServer(t *testing.T, lab *netlab.Lab) (*net.TCPListener, int) {
	t.Helper()
	l := lab.Server.ListenTCP(t, "tcp4", netlab.ServerAddr+":0")
	return l, l.Addr().(*net.TCPAddr).Port
}

// serve accepts connections on l until l is closed, running h for each in
// its own goroutine. The test's cleanup closes l and waits for the handlers.
func serve(t *testing.T, l *net.TCPListener, h func(c *net.TCPConn)) {
	t.Helper()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.AcceptTCP()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				h(c)
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Errorf("server handlers still running 10 s after the test")
		}
	})
}

// echoHandler copies everything back until the client half-closes, then
// half-closes in turn and waits for the client to close.
func echoHandler(c *net.TCPConn) {
	c.SetDeadline(time.Now().Add(60 * time.Second))
	io.Copy(c, c)
	c.CloseWrite()
	io.Copy(io.Discard, c)
}

// serverAddr returns the client-side address of the server's port through
// faithif: [2001:db8:46::c000:202]:port.
func serverAddr(port int) string {
	return netlab.FaithHostPort(netlab.ServerAddr, port)
}

// dialTimeout bounds every connect to the server: a lost SYN is retried
// by the kernel for much longer than a test should wait.
const dialTimeout = 30 * time.Second

// dialServer connects from the client namespace to the server through
// faithif, giving up after dialTimeout.
func dialServer(ctx context.Context, lab *netlab.Lab, port int) (*net.TCPConn, error) {
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	c, err := lab.Client.Dial(ctx, "tcp6", serverAddr(port))
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// mustDialServer is dialServer that fails the test on error and closes the
// connection at the end of the test.
func mustDialServer(t *testing.T, ctx context.Context, lab *netlab.Lab, port int) *net.TCPConn {
	t.Helper()
	c, err := dialServer(ctx, lab, port)
	if err != nil {
		t.Fatalf("connect from client to %s: %v", serverAddr(port), err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// echoRoundTrip sends msg on a new connection to an echo server on port and
// checks the echo.
func echoRoundTrip(ctx context.Context, lab *netlab.Lab, port int, msg string) error {
	c, err := dialServer(ctx, lab, port)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if err := c.CloseWrite(); err != nil {
		return fmt.Errorf("close write: %w", err)
	}
	got, err := io.ReadAll(c)
	if err != nil {
		return fmt.Errorf("read echo: %w", err)
	}
	if string(got) != msg {
		return fmt.Errorf("echo = %q, want %q", got, msg)
	}
	return nil
}

// isTimeout reports whether err is a timeout.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout())
}

// waitStatus polls "faithif show --json" until ok returns true or timeout
// passes, and returns the last status.
func waitStatus(t *testing.T, lab *netlab.Lab, timeout time.Duration, ok func(*netlab.Status) bool) *netlab.Status {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st, err := lab.Show()
		if err != nil {
			t.Fatalf("%v", err)
		}
		if ok(st) || time.Now().After(deadline) {
			return st
		}
		time.Sleep(100 * time.Millisecond)
	}
}
