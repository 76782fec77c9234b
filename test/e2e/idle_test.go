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

// Tests of --idle-timeout end to end: an idle flow is reset both ways and
// counted as flows_ended_total{end="idle_timeout"}; a download the client
// takes slowly is not idle (bytes waiting for a slow peer are activity).

// idleTimeout is the --idle-timeout of these tests.
const idleTimeout = 2 * time.Second

// TestIdleTimeout opens a flow, echoes a few bytes, then lets it idle: the
// relay resets both sides (the client and the IPv4 server each read
// ECONNRESET), logs "flow finished" with end=idle_timeout and counts it in
// flows_ended_total{end="idle_timeout"}. How long it took decides nothing:
// the reads have a hang guard, and it is the reset (not EOF, not a read
// deadline) that is checked.
func TestIdleTimeout(t *testing.T) {
	lab, f := startLab(t, "--keepfaith", "--idle-timeout", idleTimeout.String())
	ctx := testCtx(t, time.Minute)
	l, port := listenServer(t, lab)
	serverErr := make(chan error, 1)
	serve(t, l, func(c *net.TCPConn) {
		c.SetDeadline(time.Now().Add(30 * time.Second)) // hang guard
		buf := make([]byte, 5)
		if _, err := io.ReadFull(c, buf); err != nil {
			serverErr <- err
			return
		}
		c.Write(buf)
		// Then nothing either way, until the relay ends the flow.
		_, err := c.Read(buf)
		serverErr <- err
	})
	st0 := mustShow(t, lab)
	c := mustDialServer(t, ctx, lab, port)
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, make([]byte, 5)); err != nil {
		t.Fatalf("echo before idling: %v", err)
	}
	start := time.Now()
	expectReset(t, c, 30*time.Second)
	t.Logf("client reset %v after its last byte (--idle-timeout %v)", time.Since(start).Round(time.Millisecond), idleTimeout)
	select {
	case err := <-serverErr:
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("the IPv4 server read %v; want ECONNRESET (the relay resets both sides)", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the IPv4 server's flow still open 30 s after the client's was reset")
	}
	line, ok := f.WaitLog(20*time.Second, func(l string) bool {
		return hasAll(l, `msg="flow finished"`, "end=idle_timeout")
	})
	if !ok {
		t.Errorf("no flow finished line with end=idle_timeout:\n%s", f.Stderr())
	} else {
		t.Logf("log: %s", line)
	}
	st := waitStatus(t, lab, 20*time.Second, func(s *netlab.Status) bool { return s.FlowsOpen == 0 })
	if d := st.FlowEnds["idle_timeout"] - st0.FlowEnds["idle_timeout"]; d != 1 {
		t.Errorf("flows_ended_total{end=idle_timeout} +%d; want +1: %s", d, st.Raw)
	}
	if d := st.FlowEnds["closed"] - st0.FlowEnds["closed"]; d != 0 {
		t.Errorf("flows_ended_total{end=closed} +%d; want +0: %s", d, st.Raw)
	}
	if st.FlowsOpen != 0 {
		t.Errorf("flows_open %d after the idle timeout; want 0", st.FlowsOpen)
	}
}

// TestIdleTimeoutSlowDownload: the server sends 32 MiB at once and the
// client stops reading twice, each time for longer than the idle timeout,
// so that the relay's write toward it waits (32 MiB is more than every
// buffer on the way). Nothing is read from the server meanwhile either,
// yet the flow is not idle: the client gets every byte and a clean EOF, and
// flows_ended_total counts it closed, not idle_timeout.
func TestIdleTimeoutSlowDownload(t *testing.T) {
	const (
		size  = 32 << 20
		seed  = 17
		pause = idleTimeout * 3 / 2
	)
	lab, f := startLab(t, "--keepfaith", "--idle-timeout", idleTimeout.String())
	ctx := testCtx(t, 2*time.Minute)
	l, port := listenServer(t, lab)
	sent := make(chan hashResult, 1)
	serve(t, l, func(c *net.TCPConn) {
		c.SetDeadline(time.Now().Add(90 * time.Second)) // hang guard
		r := sendHashed(c, seed, size)
		c.CloseWrite()
		io.Copy(io.Discard, c) // until the client closes
		sent <- r
	})
	st0 := mustShow(t, lab)
	c := mustDialServer(t, ctx, lab, port)
	c.SetReadDeadline(time.Now().Add(90 * time.Second)) // hang guard
	h := sha256.New()
	var got int64
	for i := range 2 {
		// Read a little, then stop for longer than the idle timeout.
		n, err := io.CopyN(h, c, 1<<20)
		got += n
		if err != nil {
			t.Fatalf("read before pause %d: %d bytes, %v", i+1, got, err)
		}
		time.Sleep(pause)
	}
	n, err := io.Copy(h, c)
	got += n
	if err != nil {
		t.Fatalf("the download ended after %d of %d bytes: %v (reset for idleness while the client was slow?)\n%s", got, size, err, f.Stderr())
	}
	c.Close()
	var want hashResult
	select {
	case want = <-sent:
	case <-time.After(30 * time.Second):
		t.Fatal("server still waiting 30 s after the client closed")
	}
	if want.err != nil || want.n != size {
		t.Fatalf("server: sent %d of %d bytes: %v", want.n, size, want.err)
	}
	if got != size || [32]byte(h.Sum(nil)) != want.sum {
		t.Fatalf("client got %d bytes (SHA-256 differs: %v); want all %d", got, [32]byte(h.Sum(nil)) != want.sum, size)
	}
	st := waitStatus(t, lab, 20*time.Second, func(s *netlab.Status) bool { return s.FlowsOpen == 0 })
	if d := st.FlowEnds["idle_timeout"] - st0.FlowEnds["idle_timeout"]; d != 0 {
		t.Errorf("flows_ended_total{end=idle_timeout} +%d; want +0 (the download kept moving): %s", d, st.Raw)
	}
	if d := st.FlowEnds["closed"] - st0.FlowEnds["closed"]; d != 1 {
		t.Errorf("flows_ended_total{end=closed} +%d; want +1: %s", d, st.Raw)
	}
	if strings.Contains(f.Stderr(), "end=idle_timeout") {
		t.Errorf("a flow ended for idleness:\n%s", f.Stderr())
	}
}
