package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/faithif/faithif/test/netlab"
)

// Issue 12, row 7: a site whose hosts share one /64 (the normal LAN) must
// not be one client. Limits apply per source address, plus a larger
// aggregate per /64 (and a global handshake cap), each configurable.

// TestLANPerAddressLimits runs faithif with 5 flows per address and 12
// per /64, and opens flows from three addresses of the client's /64: the
// first address gets 5 and its sixth is refused (ECONNREFUSED, the
// per-address limit), the second gets 5 more (10 from the /64, more than
// one address may have), the third 2 (12) and then is refused (the /64's
// limit), each refusal logged reason=limit with the limit that refused it.
// All 12 flows work; closing one lets its address open another.
func TestLANPerAddressLimits(t *testing.T) {
	lab, f := startLab(t, "--keepfaith", "--max-flows-per-address", "5", "--max-flows-per-client", "12")
	ctx := testCtx(t, 40*time.Second)
	port := echoServer(t, lab)
	addrs := []string{"2001:db8:1::10", "2001:db8:1::11", "2001:db8:1::12"}
	for _, a := range addrs {
		if _, err := lab.Client.IP("addr", "add", a+"/64", "dev", netlab.ClientLink, "nodad"); err != nil {
			t.Fatal(err)
		}
	}
	var open []*net.TCPConn
	t.Cleanup(func() {
		for _, c := range open {
			c.Close()
		}
	})
	connect := func(addr string) (*net.TCPConn, error) {
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		c, err := lab.Client.DialFrom(dctx, "tcp6", "["+addr+"]:0", serverAddr(port))
		if err != nil {
			return nil, err
		}
		return c.(*net.TCPConn), nil
	}
	mustOpen := func(addr string, n int) {
		t.Helper()
		for i := range n {
			c, err := connect(addr)
			if err != nil {
				t.Fatalf("flow %d from %s (%d open from the /64): %v", i+1, addr, len(open), err)
			}
			open = append(open, c)
		}
	}
	limitRE := regexp.MustCompile(`\blimit=(\S+)`)
	refused := func(addr, what string) string {
		t.Helper()
		st0 := mustShow(t, lab)
		start := time.Now()
		c, err := connect(addr)
		d := time.Since(start)
		if err == nil {
			open = append(open, c)
			t.Fatalf("%s: a flow from %s was accepted (%d open from the /64); want it refused", what, addr, len(open))
		}
		if !errors.Is(err, syscall.ECONNREFUSED) || d > time.Second {
			t.Errorf("%s: connect from %s: %v after %v; want ECONNREFUSED at once", what, addr, err, d.Round(time.Millisecond))
		}
		line, ok := f.WaitLog(2*time.Second, func(l string) bool {
			return hasAll(l, `msg="flow refused"`, "reason=limit", fmt.Sprintf("client=[%s]:", addr))
		})
		if !ok {
			t.Fatalf("%s: no flow refused log line with reason=limit for %s:\n%s", what, addr, f.Stderr())
		}
		st := mustShow(t, lab)
		if st.FlowsLimited != st0.FlowsLimited+1 {
			t.Errorf("%s: flows_limited +%d, want +1", what, st.FlowsLimited-st0.FlowsLimited)
		}
		m := limitRE.FindStringSubmatch(line)
		if m == nil {
			t.Errorf("%s: the refusal does not say which limit (limit=): %s", what, line)
			return ""
		}
		t.Logf("%s: %s", what, line)
		return m[1]
	}

	mustOpen(addrs[0], 5)
	perAddress := refused(addrs[0], "a sixth flow from one address")
	mustOpen(addrs[1], 5)
	mustOpen(addrs[2], 2)
	perPrefix := refused(addrs[2], "a thirteenth flow from the /64")
	if perAddress == perPrefix {
		t.Errorf("the per-address and the per-/64 refusals both say limit=%s; want each its own", perAddress)
	}
	st := mustShow(t, lab)
	if st.FlowsOpen != 12 || st.Clients != 1 {
		t.Errorf("flows_open %d, clients %d; want 12, 1: %s", st.FlowsOpen, st.Clients, st.Raw)
	}
	if n := jsonCounter(t, st, "max_flows_per_address"); n != 5 || st.MaxFlowsPerClient != 12 {
		t.Errorf("show: max_flows_per_address %d, max_flows_per_client %d; want 5, 12", n, st.MaxFlowsPerClient)
	}
	for i, c := range open {
		echoExchange(t, c, uint64(700+i), 4<<10)
	}

	// Closing a flow of the first address lets it open another.
	open[0].Close()
	open = open[1:]
	waitStatus(t, lab, 3*time.Second, func(s *netlab.Status) bool { return s.FlowsOpen == 11 })
	time.Sleep(50 * time.Millisecond) // the limiter is released just after the flow's end is counted
	mustOpen(addrs[0], 1)
	echoExchange(t, open[len(open)-1], 800, 4<<10)
}

// TestLANDefaultLimits reads the limits a faithif started without limit
// flags applies: the per-/64 limit holds 10,000 concurrent flows (a LAN
// of many hosts is not one client), more than one address may open, and
// the per-address and global handshake limits are shown.
func TestLANDefaultLimits(t *testing.T) {
	lab, _ := startLab(t, "--keepfaith")
	st := mustShow(t, lab)
	perAddr := jsonCounter(t, st, "max_flows_per_address")
	t.Logf("defaults: max_flows_per_client (/64) %d, max_flows_per_address %d, max_handshakes_per_client %d, max_handshakes_per_address %d, max_handshakes %d",
		st.MaxFlowsPerClient, perAddr, st.MaxHandshakesPerClient, jsonCounter(t, st, "max_handshakes_per_address"), jsonCounter(t, st, "max_handshakes"))
	if st.MaxFlowsPerClient < 10000 {
		t.Errorf("max_flows_per_client (per /64) is %d by default; want at least 10,000 (issue 12: 10,000 connections from one LAN)", st.MaxFlowsPerClient)
	}
	if perAddr == 0 || perAddr >= uint64(st.MaxFlowsPerClient) {
		t.Errorf("max_flows_per_address is %d by default, max_flows_per_client %d; want a per-address limit below the /64's", perAddr, st.MaxFlowsPerClient)
	}
}
