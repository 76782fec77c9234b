package e2e

import (
	"syscall"
	"testing"
	"time"

	"github.com/faithif/faithif/test/netlab"
)

// Issue 12, row 6: anything the router's kernel would deliver locally is
// refused like the router's own address: assigned addresses, and `local`
// (AnyIP) routes in any table the dial would use.

// TestLocalRouteRefused gives the router's loopback a local route (AnyIP:
// the router's kernel accepts connections to every address of it) for
// 203.0.113.0/25 before faithif starts, and one for 198.51.100.128/25
// (the issue's) while it runs. A flow to an address of either is refused
// with EACCES at once, logged reason=denied, and the router's listener on
// 0.0.0.0 gets nothing. Once the second route is removed again,
// 198.51.100.129 is not local any more: no route (ENETUNREACH), not
// denied. (A local route in another table reached by a policy rule is not
// tested: Linux's connect does not deliver locally through one, it says
// ENETUNREACH.)
func TestLocalRouteRefused(t *testing.T) {
	lab := netlab.New(t)
	routerIP(t, lab, "-4", "route", "add", "local", "203.0.113.0/25", "dev", "lo")
	f := lab.StartFaithif(t, "--keepfaith", "--log-level", "debug")
	ctx := testCtx(t, 30*time.Second)
	port, accepted := countingListener(t, lab.Router, "tcp4", "0.0.0.0:0")

	readings := localAddrsReadings(f)
	routerIP(t, lab, "-4", "route", "add", "local", "198.51.100.128/25", "dev", "lo")
	// faithif learns of routes by netlink: wait until it has read them.
	waitLocalAddrsRead(t, f, readings)
	for _, dst := range []string{"203.0.113.7", "198.51.100.129"} {
		lport := clientPort()
		expectConnectErr(t, ctx, lab, lport, netlab.FaithHostPort(dst, port), syscall.EACCES)
		expectRefusedLog(t, f, lport, "reason=denied", "dst4="+dst+":")
	}
	expectNoAccept(t, accepted, "the router's listener on 0.0.0.0")
	if st := mustShow(t, lab); st.FlowsDenied != 2 || st.FlowsAccepted != 0 {
		t.Errorf("flows_denied %d, flows_accepted %d; want 2, 0: %s", st.FlowsDenied, st.FlowsAccepted, st.Raw)
	}

	readings = localAddrsReadings(f)
	routerIP(t, lab, "-4", "route", "del", "local", "198.51.100.128/25", "dev", "lo", "table", "local")
	waitLocalAddrsRead(t, f, readings)
	lport := clientPort()
	expectConnectErr(t, ctx, lab, lport, netlab.FaithHostPort("198.51.100.129", port), syscall.ENETUNREACH)
	expectRefusedLog(t, f, lport, "reason=network-unreachable")
	expectNoAccept(t, accepted, "the router's listener on 0.0.0.0")
}
