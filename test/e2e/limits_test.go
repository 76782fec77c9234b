package e2e

import (
	"errors"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/faithif/faithif/test/netlab"
)

// Tests of the limits on flows: per client /64, and the open-files limit.

// TestPerClientFlowLimit allows 3 flows per client /64: three connections
// stay open and work, the fourth is refused with a RST (ECONNREFUSED) and
// counted; once one of the three is closed a new connection succeeds.
func TestPerClientFlowLimit(t *testing.T) {
	lab, f := startLab(t, "--keepfaith", "--max-flows-per-client", "3")
	ctx := testCtx(t, 30*time.Second)
	port := echoServer(t, lab)
	var conns []*net.TCPConn
	for i := range 3 {
		c := mustDialServer(t, ctx, lab, port)
		echoExchange(t, c, uint64(100+i), 16<<10)
		conns = append(conns, c)
	}
	lport := clientPort()
	expectConnectErr(t, ctx, lab, lport, serverAddr(port), syscall.ECONNREFUSED)
	expectRefusedLog(t, f, lport, "reason=limit", "limit=flows-per-client", "answer=rst")
	st := mustShow(t, lab)
	if st.FlowsLimited < 1 || st.Clients != 1 || st.FlowsOpen != 3 || st.MaxFlowsPerClient != 3 {
		t.Errorf("flows_limited %d, clients %d, flows_open %d, max_flows_per_client %d; want >= 1, 1, 3, 3: %s",
			st.FlowsLimited, st.Clients, st.FlowsOpen, st.MaxFlowsPerClient, st.Raw)
	}
	// The three open flows still work.
	for i, c := range conns {
		echoExchange(t, c, uint64(200+i), 16<<10)
	}

	// Close one and wait until the relay has finished it.
	finished := countLines(f.Stderr(), `msg="flow finished"`)
	conns[0].Close()
	if _, ok := f.WaitLog(20*time.Second, func(string) bool { return countLines(f.Stderr(), `msg="flow finished"`) > finished }); !ok {
		t.Fatalf("no flow finished log line within 20 s of closing a flow:\n%s", f.Stderr())
	}
	// The relay releases the client's limit before it lowers flows_open
	// and logs "flow finished" (relay.go, done): no sleep needed.
	if st := waitStatus(t, lab, 20*time.Second, func(s *netlab.Status) bool { return s.FlowsOpen == 2 }); st.FlowsOpen != 2 {
		t.Fatalf("flows_open %d after closing one of 3: %s", st.FlowsOpen, st.Raw)
	}
	c, err, d := connectFrom(ctx, lab, clientPort(), serverAddr(port), 5*time.Second)
	if err != nil {
		t.Fatalf("connect after closing one of 3 flows: %v after %v", err, d)
	}
	defer c.Close()
	echoExchange(t, c, 300, 16<<10)
	for i, c := range conns[1:] {
		echoExchange(t, c, uint64(400+i), 16<<10)
	}
}

// TestFDLimitRefusesClearly lowers faithif's open-files limit while it runs
// and opens more flows than it allows: the extra ones are refused at once
// (ECONNREFUSED, not a hang), counted in flows_fd_limit and named in a log
// line; closing flows frees descriptors and new flows work again.
func TestFDLimitRefusesClearly(t *testing.T) {
	lab, f := startLab(t, "--keepfaith")
	ctx := testCtx(t, time.Minute)
	l, port := listenServer(t, lab)
	// The server holds each connection open until the relay closes it, so
	// that every flow holds its descriptors.
	serve(t, l, func(c *net.TCPConn) { io.Copy(io.Discard, c) })

	const limit = 96
	if out, err := exec.Command("prlimit", "--pid", strconv.Itoa(f.Pid()), "--nofile="+strconv.Itoa(limit)+":"+strconv.Itoa(limit)).CombinedOutput(); err != nil {
		t.Fatalf("prlimit: %v: %s", err, out)
	}
	if st := mustShow(t, lab); st.FDLimit != limit {
		t.Fatalf("show fd_limit = %d after prlimit; want %d", st.FDLimit, limit)
	}

	var conns []*net.TCPConn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	refused := 0
	for i := 0; i < 2*limit; i++ {
		start := time.Now()
		c, err := dialServer(ctx, lab, port)
		if err != nil {
			// ECONNREFUSED is faithif's RST: a hang would end in a timeout.
			if !errors.Is(err, syscall.ECONNREFUSED) {
				t.Fatalf("connect %d: %v after %v; want success or ECONNREFUSED", i, err, time.Since(start))
			}
			refused++
			continue
		}
		conns = append(conns, c)
	}
	t.Logf("%d flows held, %d refused with a %d-fd limit", len(conns), refused, limit)
	if refused == 0 || len(conns) == 0 {
		t.Fatalf("%d held, %d refused; want some of each", len(conns), refused)
	}
	st := mustShow(t, lab)
	if st.FlowsFDLimit != uint64(refused) {
		t.Errorf("flows_fd_limit = %d; want %d", st.FlowsFDLimit, refused)
	}
	if _, ok := f.WaitLog(20*time.Second, func(line string) bool {
		return strings.Contains(line, "out of file descriptors") && strings.Contains(line, "fd-limit")
	}); !ok {
		t.Errorf("no log line naming the fd limit; log:\n%s", f.Stderr())
	}

	// Free some: new flows work again.
	for _, c := range conns[:10] {
		c.Close()
	}
	conns = conns[10:]
	// Wait for the state: the ten flows ended and their descriptors closed.
	if st := waitStatus(t, lab, 20*time.Second, func(s *netlab.Status) bool { return s.FlowsOpen == int64(len(conns)) }); st.FlowsOpen != int64(len(conns)) {
		t.Fatalf("flows_open %d after closing 10 flows; want %d: %s", st.FlowsOpen, len(conns), st.Raw)
	}
	c, err := dialServer(ctx, lab, port)
	if err != nil {
		t.Fatalf("connect after freeing descriptors: %v", err)
	}
	c.Close()
}
