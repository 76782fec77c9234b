package e2e

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/faithif/faithif/faithif/flows"
	"github.com/faithif/faithif/test/netlab"
)

// heldFlow is one flow of TestFlowsCommand: how many bytes each way, and
// what the test holds of it.
type heldFlow struct {
	server     int // the server's port: 0 or 1 of the two listeners
	c2s, s2c   int // bytes each way, the 2-byte index the client sends first included
	lport      int // the client's port
	client     *net.TCPConn
	serverConn *net.TCPConn  // the server's end, once the bytes are in
	src4Port   uint16        // the relay's IPv4 port, as the server saw it
	serverEOF  chan struct{} // closed when the server has read the client's FIN
}

// listFlows runs "faithif flows ARGS --json" and decodes it strictly.
func listFlows(t *testing.T, lab *netlab.Lab, args ...string) []flows.Flow {
	t.Helper()
	r := lab.Faithif(append(append([]string{"flows"}, args...), "--json")...)
	if r.Err != nil || r.ExitCode != 0 {
		t.Fatalf("faithif flows --json %s: %s", strings.Join(args, " "), r)
	}
	tb, err := flows.Decode([]byte(r.Stdout))
	if err != nil {
		t.Fatalf("faithif flows --json %s: %v in %q", strings.Join(args, " "), err, r.Stdout)
	}
	return tb.Flows
}

// waitFlowList polls "faithif flows --json" until ok accepts the list (a
// deadline only guards against a hang) and returns it.
func waitFlowList(t *testing.T, lab *netlab.Lab, what string, ok func([]flows.Flow) bool) []flows.Flow {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		fl := listFlows(t, lab)
		if ok(fl) {
			return fl
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: faithif flows lists %+v", what, fl)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestFlowsCommand opens three flows through faithif to two ports of a
// server that keeps them open, each moving a known number of bytes each
// way, and checks what "faithif flows" says of each: addresses and ports
// on both sides (the IPv4 source port as the server saw it), state and
// byte counts, exactly, in JSON and in text; then half-closes one from the
// client and one from the server and sees their states change; filters
// select the right flows, a bad one exits 2; a flow whose dial is pending
// shows in handshake; and flows that end leave the table.
func TestFlowsCommand(t *testing.T) {
	// The dial left pending below times out after 8 s.
	lab, f := startLab(t, "--keepfaith", "--dial-timeout", "8s")
	ctx := testCtx(t, 2*time.Minute)

	held := []*heldFlow{
		{server: 0, c2s: 1000, s2c: 3000, serverEOF: make(chan struct{})},
		{server: 0, c2s: 5, s2c: 70000, serverEOF: make(chan struct{})},
		{server: 1, c2s: 123456, s2c: 1, serverEOF: make(chan struct{})},
	}
	var mu sync.Mutex
	got := make(chan int, len(held))
	done := make(chan struct{})
	ports := make([]int, 2)
	for i := range ports {
		l, port := listenServer(t, lab)
		ports[i] = port
		serve(t, l, func(c *net.TCPConn) {
			c.SetDeadline(time.Now().Add(90 * time.Second))
			var idx [2]byte
			if _, err := io.ReadFull(c, idx[:]); err != nil {
				return
			}
			i := int(binary.BigEndian.Uint16(idx[:]))
			if i >= len(held) {
				return
			}
			h := held[i]
			if n, err := io.CopyN(io.Discard, c, int64(h.c2s-2)); err != nil {
				t.Errorf("server, flow %d: read %d of %d bytes: %v", i, n+2, h.c2s, err)
				return
			}
			if _, err := c.Write(make([]byte, h.s2c)); err != nil {
				t.Errorf("server, flow %d: write: %v", i, err)
				return
			}
			mu.Lock()
			h.serverConn, h.src4Port = c, uint16(c.RemoteAddr().(*net.TCPAddr).Port)
			mu.Unlock()
			got <- i
			go func() {
				io.Copy(io.Discard, c) // until the client's FIN
				close(h.serverEOF)
			}()
			<-done // open until the test is over
		})
	}
	t.Cleanup(func() { close(done) }) // before serve's cleanup waits for the handlers

	for i, h := range held {
		h.lport = clientPort()
		c, err, _ := connectFrom(ctx, lab, h.lport, serverAddr(ports[h.server]), dialTimeout)
		if err != nil {
			t.Fatalf("flow %d: connect: %v", i, err)
		}
		t.Cleanup(func() { c.Close() })
		h.client = c
		c.SetDeadline(time.Now().Add(30 * time.Second))
		payload := make([]byte, h.c2s)
		binary.BigEndian.PutUint16(payload, uint16(i))
		if _, err := c.Write(payload); err != nil {
			t.Fatalf("flow %d: write: %v", i, err)
		}
		if _, err := io.ReadFull(c, make([]byte, h.s2c)); err != nil {
			t.Fatalf("flow %d: read %d bytes: %v", i, h.s2c, err)
		}
	}
	for range held {
		<-got
	}

	want := func(h *heldFlow, state string) flows.Flow {
		return flows.Flow{
			Interface:           netlab.FaithIf,
			Client:              netip.AddrPortFrom(netip.MustParseAddr(netlab.ClientAddr), uint16(h.lport)),
			Dst6:                netip.AddrPortFrom(netip.MustParseAddr(netlab.ServerFaithAddr), uint16(ports[h.server])),
			Src4:                netip.AddrPortFrom(netip.MustParseAddr(netlab.RouterAddr4), h.src4Port),
			Dst4:                netip.AddrPortFrom(netip.MustParseAddr(netlab.ServerAddr), uint16(ports[h.server])),
			State:               state,
			BytesClientToServer: uint64(h.c2s),
			BytesServerToClient: uint64(h.s2c),
		}
	}
	// same compares everything but the times, which must be sane.
	same := func(fl []flows.Flow, states ...string) bool {
		if len(fl) != len(held) {
			return false
		}
		for i, h := range held {
			g := fl[i]
			if g.AgeSeconds < 0 || g.IdleSeconds < 0 || g.IdleSeconds > g.AgeSeconds {
				t.Fatalf("flow %d: age %v, idle %v", i, g.AgeSeconds, g.IdleSeconds)
			}
			g.AgeSeconds, g.IdleSeconds = 0, 0
			if g != want(h, states[i]) {
				return false
			}
		}
		return true
	}
	fl := waitFlowList(t, lab, "three established flows", func(fl []flows.Flow) bool {
		return same(fl, "established", "established", "established")
	})
	for i, g := range fl {
		t.Logf("flow %d: %+v", i, g)
	}

	// The text form: the same flows, one line each, in the same order.
	r := lab.Faithif("flows")
	if r.ExitCode != 0 {
		t.Fatalf("faithif flows: %s", r)
	}
	lines := strings.Split(strings.TrimSuffix(r.Stdout, "\n"), "\n")
	t.Logf("faithif flows:\n%s", r.Stdout)
	if len(lines) != 1+len(held) || strings.Join(strings.Fields(lines[0]), " ") != "INTERFACE CLIENT DST6 SRC4 DST4 STATE AGE IDLE CLIENT->SERVER SERVER->CLIENT" {
		t.Fatalf("faithif flows: want a heading and %d lines:\n%s", len(held), r.Stdout)
	}
	for i, h := range held {
		w := want(h, "established")
		cols := strings.Fields(lines[i+1])
		if len(cols) != 10 {
			t.Errorf("text line %d has %d columns; want 10: %s", i+1, len(cols), lines[i+1])
			continue
		}
		wantCols := []string{w.Interface, w.Client.String(), w.Dst6.String(), w.Src4.String(), w.Dst4.String(), w.State, cols[6], cols[7],
			strconv.Itoa(h.c2s), strconv.Itoa(h.s2c)}
		if !reflect.DeepEqual(cols, wantCols) {
			t.Errorf("text line %d: %q\nwant %q", i+1, cols, wantCols)
		}
	}

	// Filters.
	for _, c := range []struct {
		args []string
		want []int // indexes in held
	}{
		{[]string{"--client", "2001:db8:1::/64"}, []int{0, 1, 2}},
		{[]string{"--client", fmt.Sprintf("[%s]:%d", netlab.ClientAddr, held[1].lport)}, []int{1}},
		{[]string{"--client", "2001:db8:2::/64"}, nil},
		{[]string{"--dest", fmt.Sprintf("%s:%d", netlab.ServerAddr, ports[1])}, []int{2}},
		{[]string{"--dest", "192.0.2.0/24"}, []int{0, 1, 2}},
		{[]string{"--dest", "198.51.100.0/24"}, nil},
		{[]string{"--dest", netlab.FaithPrefix}, []int{0, 1, 2}},
		{[]string{"--dest", fmt.Sprintf("[%s]:%d", netlab.ServerFaithAddr, ports[0])}, []int{0, 1}},
		{[]string{netlab.FaithIf, "--client", netlab.ClientAddr, "--dest", fmt.Sprintf(":%d", ports[0])}, []int{0, 1}},
	} {
		fl := listFlows(t, lab, c.args...)
		var gotPorts, wantPorts []int
		for _, g := range fl {
			gotPorts = append(gotPorts, int(g.Client.Port()))
		}
		for _, i := range c.want {
			wantPorts = append(wantPorts, held[i].lport)
		}
		if !reflect.DeepEqual(gotPorts, wantPorts) {
			t.Errorf("faithif flows %s: client ports %v; want %v", strings.Join(c.args, " "), gotPorts, wantPorts)
		}
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--dest", "192.0.2.300"}, "faithif: --dest 192.0.2.300: not an IP address or prefix"},
		{[]string{"--client", "192.0.2.1"}, "faithif: --client 192.0.2.1: clients are IPv6"},
		{[]string{"--dest", "192.0.2.2:99999"}, `faithif: --dest 192.0.2.2:99999: port "99999": want a number from 1 to 65535`},
	} {
		r := lab.Faithif(append([]string{"flows"}, c.args...)...)
		if r.ExitCode != 2 || !strings.HasPrefix(r.Stderr, c.want) || r.Stdout != "" {
			t.Errorf("faithif flows %s: %s; want exit 2, nothing on stdout and %q", strings.Join(c.args, " "), r, c.want)
		}
	}

	// Half-closes: the client's FIN on flow 0, the server's on flow 1.
	held[0].client.CloseWrite()
	<-held[0].serverEOF
	mu.Lock()
	held[1].serverConn.CloseWrite()
	mu.Unlock()
	if n, err := held[1].client.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("flow 1: the client read %d bytes, %v after the server's FIN; want EOF", n, err)
	}
	waitFlowList(t, lab, "half-closed each way", func(fl []flows.Flow) bool {
		return same(fl, "half_closed_by_client", "half_closed_by_server", "established")
	})

	// A flow whose dial is pending: 192.0.2.99 does not answer ARP, which
	// the router asks for 30 s, past the 8 s dial timeout.
	if err := lab.Router.Sysctl("net.ipv4.neigh."+netlab.RouterServerLink+".mcast_solicit", "30"); err != nil {
		t.Fatal(err)
	}
	pendingPort := clientPort()
	dctx, cancel := context.WithCancel(ctx)
	dialed := make(chan error, 1)
	go func() {
		c, err, _ := connectFrom(dctx, lab, pendingPort, netlab.FaithHostPort("192.0.2.99", 80), dialTimeout)
		if c != nil {
			c.Close()
		}
		dialed <- err
	}()
	pending := waitFlowList(t, lab, "a flow in handshake", func(fl []flows.Flow) bool {
		for _, g := range fl {
			if g.Client.Port() == uint16(pendingPort) {
				return true
			}
		}
		return false
	})
	for _, g := range pending {
		if g.Client.Port() != uint16(pendingPort) {
			continue
		}
		if g.State != "handshake" || g.Src4.IsValid() || g.Dst4 != netip.MustParseAddrPort("192.0.2.99:80") || g.BytesClientToServer+g.BytesServerToClient != 0 {
			t.Errorf("the flow being dialled: %+v; want handshake, no src4, dst4 192.0.2.99:80, no bytes", g)
		}
	}
	r = lab.Faithif("flows", "--dest", "192.0.2.99")
	if lines := strings.Split(strings.TrimSpace(r.Stdout), "\n"); r.ExitCode != 0 || len(lines) != 2 || len(strings.Fields(lines[1])) != 10 ||
		!reflect.DeepEqual(strings.Fields(lines[1])[3:6], []string{"-", "192.0.2.99:80", "handshake"}) {
		t.Errorf("faithif flows --dest 192.0.2.99: %s; want one line with src4 -, dst4 192.0.2.99:80, handshake", r)
	}
	cancel()
	<-dialed

	// Flows that end leave the table, and so does the one whose dial
	// times out.
	held[0].serverConn.CloseWrite()
	held[1].client.CloseWrite()
	held[2].client.CloseWrite()
	held[2].serverConn.CloseWrite()
	waitFlowList(t, lab, "every flow over", func(fl []flows.Flow) bool { return len(fl) == 0 })
	if strings.Contains(f.Stderr(), `msg="flow captured"`) {
		t.Errorf("at the default level (info) faithif logged the debug lines of a SYN:\n%s", f.Stderr())
	}
}

// TestDebugLog: with --log-level debug faithif logs each step of a SYN:
// captured, mapped, the access rule that decided (FILE:LINE), the dial and
// its result (with its duration, and its error if it failed), for a
// permitted flow, a permitted flow whose dial is refused, and a denied one.
func TestDebugLog(t *testing.T) {
	rules := "# test\n2001:db8:1::/48 permit 192.0.2.2/32\n2001:db8:1::/48 deny 0.0.0.0/0\n"
	path := netlab.TempDir(t, "rules") + "/faithd.conf"
	writeFile(t, path, rules)
	lab, f := startLab(t, "--keepfaith", "--log-level", "debug", "--access", path)
	ctx := testCtx(t, time.Minute)
	port := echoServer(t, lab)
	permit, deny := fmt.Sprintf("rule=%s:2 ", path), fmt.Sprintf("rule=%s:3 ", path)

	ok := clientPort()
	c, err, _ := connectFrom(ctx, lab, ok, serverAddr(port), dialTimeout)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	refused := clientPort()
	expectConnectErr(t, ctx, lab, refused, serverAddr(9), syscall.ECONNREFUSED)
	denied := clientPort()
	expectConnectErr(t, ctx, lab, denied, netlab.FaithHostPort("203.0.113.1", 80), syscall.EACCES)

	for _, c := range []struct {
		lport int
		want  [][]string
	}{
		{ok, [][]string{
			{`level=DEBUG msg="flow captured"`, "dst6=" + serverAddr(port)},
			{`level=DEBUG msg="flow mapped"`, fmt.Sprintf("dst4=%s:%d", netlab.ServerAddr, port)},
			{`level=DEBUG msg="flow rule"`, permit, "decision=permit"},
			{`level=DEBUG msg="dial started"`, "order=dial-first"},
			{`level=DEBUG msg="dial finished"`, "result=ok ", "dial_seconds=", "src4=" + netlab.RouterAddr4 + ":"},
			{`level=INFO msg="flow accepted"`},
		}},
		{refused, [][]string{
			{`level=DEBUG msg="flow captured"`},
			{`level=DEBUG msg="flow mapped"`, "dst4=" + netlab.ServerAddr + ":9"},
			{`level=DEBUG msg="flow rule"`, permit, "decision=permit"},
			{`level=DEBUG msg="dial started"`},
			{`level=DEBUG msg="dial finished"`, "result=failed ", "dial_seconds=", "error=", "connection refused"},
			{`level=INFO msg="flow refused"`, "reason=connection-refused"},
		}},
		{denied, [][]string{
			{`level=DEBUG msg="flow captured"`},
			{`level=DEBUG msg="flow mapped"`, "dst4=203.0.113.1:80"},
			{`level=DEBUG msg="flow rule"`, deny, "decision=deny"},
			{`level=INFO msg="flow refused"`, "reason=denied", "answer=icmp6-prohibited"},
		}},
	} {
		if _, found := f.WaitLog(5*time.Second, func(l string) bool { return hasAll(l, "level=INFO", `msg="flow `, clientTag(c.lport)) }); !found {
			t.Fatalf("no info line for %s:\n%s", clientTag(c.lport), f.Stderr())
		}
		var lines []string
		for _, l := range strings.Split(f.Stderr(), "\n") {
			if strings.Contains(l, clientTag(c.lport)) && !strings.Contains(l, `msg="flow finished"`) {
				lines = append(lines, l)
			}
		}
		if len(lines) != len(c.want) {
			t.Errorf("%s: %d lines; want %d:\n%s", clientTag(c.lport), len(lines), len(c.want), strings.Join(lines, "\n"))
			continue
		}
		for i, subs := range c.want {
			for _, s := range subs {
				if !strings.Contains(lines[i], s) {
					t.Errorf("%s: line %d lacks %q: %s", clientTag(c.lport), i+1, s, lines[i])
				}
			}
		}
		t.Logf("%s:\n%s", clientTag(c.lport), strings.Join(lines, "\n"))
	}
}
