package e2e

import (
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/faithif/faithif/test/netlab"
)

// TestCounters runs a known number of flows and checks the counters of
// "faithif show --json".
func TestCounters(t *testing.T) {
	const (
		flows    = 10
		reqSize  = 1000
		respSize = 3000
	)
	lab, _ := startLab(t, "--keepfaith")
	ctx := testCtx(t, time.Minute)

	st0, err := lab.Show()
	if err != nil {
		t.Fatal(err)
	}
	if st0.FlowsTotal != 0 || st0.FlowsAccepted != 0 || st0.BytesIn != 0 || st0.BytesOut != 0 || st0.FlowsOpen != 0 {
		t.Errorf("fresh instance has non-zero flow counters: %s", st0.Raw)
	}
	if !st0.KeepFaith {
		t.Errorf("created with --keepfaith but show says keepfaith false: %s", st0.Raw)
	}

	l, port := listenServer(t, lab)
	resp := randBytes(20, respSize)
	serve(t, l, func(c *net.TCPConn) {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.CopyN(io.Discard, c, reqSize); err != nil {
			return
		}
		c.Write(resp)
	})
	req := randBytes(21, reqSize)
	for i := range flows {
		c := mustDialServer(t, ctx, lab, port)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write(req); err != nil {
			t.Fatalf("flow %d: write: %v", i, err)
		}
		got, err := io.ReadAll(c)
		if err != nil || len(got) != respSize {
			t.Fatalf("flow %d: read %d bytes, %v; want %d bytes", i, len(got), err, respSize)
		}
		c.Close()
	}
	// One refused flow.
	if c, err := dialServer(ctx, lab, 9); err == nil {
		c.Close()
		t.Fatalf("connect to closed port 9 succeeded")
	} else if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("connect to closed port 9: %v, want ECONNREFUSED", err)
	}

	// Every count here is known exactly: 10 flows relayed, 1 refused,
	// the payload bytes each way (the relay counts payload only).
	wantIn, wantOut := uint64(flows*reqSize), uint64(flows*respSize)
	st := waitStatus(t, lab, 20*time.Second, func(s *netlab.Status) bool {
		return s.FlowsOpen == 0 && s.FlowsAccepted >= flows && s.FlowsRefused >= 1 &&
			s.BytesIn >= wantIn && s.BytesOut >= wantOut
	})
	t.Logf("show --json: %s", st.Raw)
	if st.FlowsAccepted != flows {
		t.Errorf("flows_accepted = %d, want %d", st.FlowsAccepted, flows)
	}
	if st.FlowsRefused != 1 {
		t.Errorf("flows_refused = %d, want 1", st.FlowsRefused)
	}
	if st.FlowsTotal != flows+1 {
		t.Errorf("flows_decided = %d, want %d accepted + 1 refused", st.FlowsTotal, flows)
	}
	if st.FlowsOpen != 0 {
		t.Errorf("flows_open = %d after all flows closed, want 0", st.FlowsOpen)
	}
	if st.BytesIn != wantIn {
		t.Errorf("bytes_client_to_server_total = %d, want %d", st.BytesIn, wantIn)
	}
	if st.BytesOut != wantOut {
		t.Errorf("bytes_server_to_client_total = %d, want %d", st.BytesOut, wantOut)
	}
	// Each flow is at least SYN, ACK+data, FIN, ACK from the client (more
	// if a segment was retransmitted: not known exactly).
	if st.PacketsIn < 3*(flows+1) {
		t.Errorf("packets_in = %d, want >= %d", st.PacketsIn, 3*(flows+1))
	}
	if st.FlowsDenied != 0 {
		t.Errorf("flows_denied = %d, want 0", st.FlowsDenied)
	}
	if st.UptimeSeconds <= 0 {
		t.Errorf("uptime_seconds = %v, want > 0", st.UptimeSeconds)
	}

	// The human-readable form says the same numbers.
	r := lab.Faithif("show", netlab.FaithIf)
	if r.ExitCode != 0 {
		t.Fatalf("faithif show %s: %s", netlab.FaithIf, r)
	}
	t.Logf("faithif show:\n%s", r.Stdout)
	for _, re := range []string{
		`(?m)^` + netlab.FaithIf + `:\s`,
		fmt.Sprintf(`(?m)^\s+flows\s+open 0, total %d, accepted %d, refused 1, denied 0,`, flows+1, flows),
		fmt.Sprintf(`(?m)^\s+bytes\s+client->server %d, server->client %d$`, wantIn, wantOut),
	} {
		if !regexp.MustCompile(re).MatchString(r.Stdout) {
			t.Errorf("faithif show %s does not match /%s/:\n%s", netlab.FaithIf, re, r.Stdout)
		}
	}
}
