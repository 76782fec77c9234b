package e2e

import (
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/faithif/faithif/test/netlab"
)

// TestConnectionRefused connects to a server port nobody listens on: the
// IPv4 RST must reach the client as ECONNREFUSED within 2 s.
func TestConnectionRefused(t *testing.T) {
	lab, _ := startLab(t, "--keepfaith")
	ctx := testCtx(t, 30*time.Second)
	const port = 9 // nothing listens in the server namespace
	start := time.Now()
	c, err := dialServer(ctx, lab, port)
	d := time.Since(start)
	if err == nil {
		c.Close()
		t.Fatalf("connect to %s succeeded, want ECONNREFUSED", serverAddr(port))
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("connect to %s after %v: %v, want ECONNREFUSED", serverAddr(port), d, err)
	}
	if d > 2*time.Second {
		t.Fatalf("ECONNREFUSED after %v, want within 2 s", d)
	}
	t.Logf("refused after %v", d.Round(time.Microsecond))
}

// TestLoopbackRefused connects to 127.0.0.1 embedded in the FAITH prefix,
// at the port of a listener on the router's own loopback: faithif must refuse
// the flow instead of relaying to the router itself.
func TestLoopbackRefused(t *testing.T) {
	lab, f := startLab(t, "--keepfaith")
	ctx := testCtx(t, 30*time.Second)
	port, accepted := countingListener(t, lab.Router, "tcp4", "127.0.0.1:0")

	addr := netlab.FaithHostPort("127.0.0.1", port)
	start := time.Now()
	c, err := lab.Client.Dial(ctx, "tcp6", addr)
	d := time.Since(start)
	if err == nil {
		c.Close()
		t.Errorf("connect to %s (router loopback) succeeded, want it refused", addr)
	} else {
		if !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, syscall.EACCES) {
			t.Errorf("connect to %s after %v: %v, want ECONNREFUSED or EACCES", addr, d, err)
		} else {
			t.Logf("connect to %s: %v after %v", addr, err, d.Round(time.Microsecond))
		}
		if d > 2*time.Second {
			t.Errorf("refusal took %v, want within 2 s", d)
		}
	}
	time.Sleep(500 * time.Millisecond)
	if n := accepted.Load(); n != 0 {
		t.Errorf("the router's loopback listener got %d connection(s): faithif relayed to 127.0.0.1", n)
	}
	line, ok := f.WaitLog(3*time.Second, func(line string) bool {
		l := strings.ToLower(line)
		return strings.Contains(l, "refus") && (strings.Contains(l, "127.0.0.1") || strings.Contains(l, "7f00:1"))
	})
	if !ok {
		t.Errorf("no log line mentioning a refused flow to 127.0.0.1 (or ::7f00:1); log:\n%s", f.Stderr())
	} else {
		t.Logf("log: %s", line)
	}
}
