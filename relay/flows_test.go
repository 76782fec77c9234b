package relay

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/faithif/faithif/relay/flow"
)

// connRequest is a flow.Request whose Accept returns a kernelConn over
// loopback, whose other end (peer) the test holds as the IPv6 client.
type connRequest struct {
	client, dest netip.AddrPort
	conn         flow.Conn
	peer         *net.TCPConn
	refused      chan flow.Refusal
}

func newConnRequest(t *testing.T, port uint16) *connRequest {
	t.Helper()
	peer, ours := tcpPair(t)
	kc, err := newKernelConn(ours)
	if err != nil {
		t.Fatal(err)
	}
	return &connRequest{
		client:  netip.AddrPortFrom(netip.MustParseAddr("2001:db8:1::2"), port),
		dest:    netip.MustParseAddrPort("[2001:db8:46::c000:202]:80"),
		conn:    kc,
		peer:    peer,
		refused: make(chan flow.Refusal, 1),
	}
}

func (q *connRequest) Client() netip.AddrPort     { return q.client }
func (q *connRequest) Dest() netip.AddrPort       { return q.dest }
func (q *connRequest) Accept() (flow.Conn, error) { return q.conn, nil }
func (q *connRequest) Refuse(how flow.Refusal)    { q.conn.Close(); q.refused <- how }

// acceptAll accepts connections on a loopback listener and hands them to
// the test.
func acceptAll(t *testing.T) (addr string, conns <-chan *net.TCPConn) {
	t.Helper()
	l, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan *net.TCPConn, 16)
	go func() {
		for {
			c, err := l.AcceptTCP()
			if err != nil {
				return
			}
			ch <- c
		}
	}()
	t.Cleanup(func() {
		l.Close()
		for {
			select {
			case c := <-ch:
				c.Close()
			default:
				return
			}
		}
	})
	return l.Addr().String(), ch
}

// newFlowsRelay returns a relay for 2001:db8:46::/96 whose dials go to
// target once gate (if not nil) lets them.
func newFlowsRelay(t *testing.T, out *syncBuffer, rules *Rules, target string, gate <-chan struct{}) *Relay {
	t.Helper()
	m, err := NewMapper(netip.MustParsePrefix("2001:db8:46::/96"))
	if err != nil {
		t.Fatal(err)
	}
	r := New(Config{Mapper: m, Rules: rules, Logger: textLogger(out), Limits: Limits{MaxHandshakesTotal: 8}})
	r.dialVia = func(ctx context.Context, d *net.Dialer, _ string) (net.Conn, error) {
		if gate != nil {
			select {
			case <-gate:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return d.DialContext(ctx, "tcp4", target)
	}
	t.Cleanup(func() {
		r.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := r.Wait(ctx); err != nil {
			t.Errorf("flows left: %v", err)
		}
	})
	return r
}

// waitFlows polls r.Flows until ok accepts them (a deadline only guards
// against a hang) and returns them, by client port.
func waitFlows(t *testing.T, r *Relay, what string, ok func(map[uint16]FlowInfo) bool) map[uint16]FlowInfo {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		m := map[uint16]FlowInfo{}
		for _, f := range r.Flows() {
			m[f.Client.Port()] = f
		}
		if ok(m) {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: flows are %+v", what, m)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestFlows follows flows through every state Flows reports: handshake
// while the dial is pending, established with exact byte counts, half
// closed each way, draining, and gone once over; a refused flow is never
// listed.
func TestFlows(t *testing.T) {
	var out syncBuffer
	target, servers := acceptAll(t)
	gate := make(chan struct{})
	r := newFlowsRelay(t, &out, nil, target, gate)

	a, b := newConnRequest(t, 1000), newConnRequest(t, 1001)
	go r.Handle(a)
	go r.Handle(b)
	flows := waitFlows(t, r, "two flows dialling", func(m map[uint16]FlowInfo) bool { return len(m) == 2 })
	for port, f := range flows {
		if f.State != FlowHandshake || f.Src4.IsValid() || f.Dst4 != netip.MustParseAddrPort("192.0.2.2:80") ||
			f.Dst6 != netip.MustParseAddrPort("[2001:db8:46::c000:202]:80") || f.BytesClientToServer != 0 || f.Idle != f.Age {
			t.Errorf("flow from port %d while dialling: %+v; want handshake, no src4, dst4 192.0.2.2:80, idle = age", port, f)
		}
	}
	if s := FlowHandshake.String(); s != "handshake" {
		t.Errorf("FlowHandshake is %q", s)
	}

	close(gate)
	srv := map[uint16]*net.TCPConn{} // by the relay's IPv4 port
	for range 2 {
		c := <-servers
		srv[uint16(c.RemoteAddr().(*net.TCPAddr).Port)] = c
	}
	flows = waitFlows(t, r, "both established", func(m map[uint16]FlowInfo) bool {
		return m[1000].State == FlowEstablished && m[1001].State == FlowEstablished
	})
	byClient := map[uint16]*net.TCPConn{}
	for port, f := range flows {
		c := srv[f.Src4.Port()]
		if c == nil || f.Src4.Addr() != netip.MustParseAddr("127.0.0.1") {
			t.Fatalf("flow from port %d: src4 %s is not the address the server saw (%v)", port, f.Src4, srv)
		}
		byClient[port] = c
	}

	// Bytes each way, exactly.
	if _, err := a.peer.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(byClient[1000], buf); err != nil {
		t.Fatal(err)
	}
	if _, err := byClient[1000].Write([]byte("goodbye")); err != nil {
		t.Fatal(err)
	}
	buf = make([]byte, 7)
	if _, err := io.ReadFull(a.peer, buf); err != nil {
		t.Fatal(err)
	}
	flows = waitFlows(t, r, "bytes counted", func(m map[uint16]FlowInfo) bool {
		return m[1000].BytesClientToServer == 5 && m[1000].BytesServerToClient == 7
	})
	if f := flows[1000]; f.Idle > f.Age || flows[1001].BytesClientToServer+flows[1001].BytesServerToClient != 0 {
		t.Errorf("after the exchange: %+v (idle must not exceed age) and %+v (nothing moved)", f, flows[1001])
	}

	// Half-closes, each way.
	a.peer.CloseWrite()
	byClient[1001].CloseWrite()
	waitFlows(t, r, "half closed", func(m map[uint16]FlowInfo) bool {
		return m[1000].State == FlowHalfClosedByClient && m[1001].State == FlowHalfClosedByServer
	})

	// Draining: the relay admits no new flow, the open ones run on.
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	r.Shutdown(ctx)
	cancel()
	waitFlows(t, r, "draining", func(m map[uint16]FlowInfo) bool {
		return len(m) == 2 && m[1000].State == FlowDraining && m[1001].State == FlowDraining
	})

	// Over: gone.
	byClient[1000].CloseWrite()
	b.peer.CloseWrite()
	waitFlows(t, r, "both closed", func(m map[uint16]FlowInfo) bool { return len(m) == 0 })
}

// TestFlowsRefusedNotListed: a denied flow and a failed dial leave nothing
// in the table.
func TestFlowsRefusedNotListed(t *testing.T) {
	var out syncBuffer
	rules, err := ParseRules("faithd.conf", strings.NewReader("2001:db8:1::/48 deny 0.0.0.0/0\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	r := newFlowsRelay(t, &out, rules, closedPort(t), nil)
	q := newConnRequest(t, 1000)
	r.Handle(q)
	<-q.refused
	r.SetRules(nil)
	q = newConnRequest(t, 1001)
	r.Handle(q) // the dial is refused
	<-q.refused
	if f := r.Flows(); len(f) != 0 {
		t.Fatalf("flows after two refusals: %+v", f)
	}
	if r.live.n != 0 || r.live.head != nil {
		t.Fatalf("the list holds %d flows", r.live.n)
	}
}

// TestFlowsMany: the list holds and lists thousands of flows, and
// unlisting them in any order leaves it empty.
func TestFlowsMany(t *testing.T) {
	var l liveFlows
	fs := make([]*flowSetup, 15000)
	for i := range fs {
		fs[i] = &flowSetup{}
		l.add(fs[i])
	}
	l.add(fs[0]) // twice: once
	if got := len(l.list()); got != len(fs) || l.n != len(fs) {
		t.Fatalf("listed %d (n %d); want %d", got, l.n, len(fs))
	}
	for i := 0; i < len(fs); i += 2 {
		l.remove(fs[i])
	}
	for i := len(fs) - 1; i > 0; i -= 2 {
		l.remove(fs[i])
	}
	l.remove(fs[1]) // twice: once
	if got := len(l.list()); got != 0 || l.n != 0 || l.head != nil {
		t.Fatalf("after removing every flow: %d listed, n %d", got, l.n)
	}
}

// TestDebugSteps: at debug level each SYN's steps are logged (captured,
// mapped, the rule that decided, the dial and its result), for a permitted
// flow and a denied one.
func TestDebugSteps(t *testing.T) {
	var out syncBuffer
	target, servers := acceptAll(t)
	rules, err := ParseRules("faithd.conf", strings.NewReader("2001:db8:1::/48 permit 192.0.2.2:80\n2001:db8:1::/48 deny 0.0.0.0/0\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	r := newFlowsRelay(t, &out, rules, target, nil)

	r.Handle(newConnRequest(t, 1000))
	<-servers
	deny := newConnRequest(t, 1001)
	deny.dest = netip.MustParseAddrPort("[2001:db8:46::c000:202]:81")
	r.Handle(deny)
	<-deny.refused
	lines := out.allLines()
	want := [][]string{
		{`msg="flow captured"`, "client=[2001:db8:1::2]:1000 ", "dst6=[2001:db8:46::c000:202]:80"},
		{`msg="flow mapped"`, "dst4=192.0.2.2:80"},
		{`msg="flow rule"`, "rule=faithd.conf:1 ", "decision=permit"},
		{`msg="dial started"`, "order=dial-first"},
		{`msg="dial finished"`, "result=ok ", "dial_seconds=", "src4=127.0.0.1:"},
		{`msg="flow accepted"`},
		{`msg="flow captured"`, "client=[2001:db8:1::2]:1001 "},
		{`msg="flow mapped"`, "dst4=192.0.2.2:81"},
		{`msg="flow rule"`, "rule=faithd.conf:2 ", "decision=deny"},
		{`msg="flow refused"`, "reason=denied"},
	}
	checkLines(t, lines, want)

	// No access file, a failed dial, an always-refused destination.
	r = newFlowsRelay(t, &out, nil, closedPort(t), nil)
	q := newConnRequest(t, 1002)
	r.Handle(q)
	<-q.refused
	q = newConnRequest(t, 1003)
	q.dest = netip.MustParseAddrPort("[2001:db8:46::7f00:1]:80") // 127.0.0.1
	r.Handle(q)
	<-q.refused
	checkLines(t, out.allLines(), [][]string{
		{`msg="flow captured"`, "client=[2001:db8:1::2]:1002 "},
		{`msg="flow mapped"`},
		{`msg="flow rule"`, "rule=default ", "decision=permit"},
		{`msg="dial started"`},
		{`msg="dial finished"`, "result=failed ", "dial_seconds=", "error=", "connection refused"},
		{`msg="flow refused"`, "reason=connection-refused"},
		{`msg="flow captured"`, "client=[2001:db8:1::2]:1003 "},
		{`msg="flow mapped"`, "dst4=127.0.0.1:80"},
		{`msg="flow rule"`, "rule=always-refused ", "decision=deny", "error="},
		{`msg="flow refused"`, "reason=denied"},
	})
}

// checkLines checks that lines are want, one to one, each line holding
// every string of its want.
func checkLines(t *testing.T, lines []string, want [][]string) {
	t.Helper()
	if len(lines) != len(want) {
		t.Fatalf("%d log lines; want %d:\n%s", len(lines), len(want), strings.Join(lines, "\n"))
	}
	for i, subs := range want {
		for _, s := range subs {
			if !strings.Contains(lines[i], s) {
				t.Errorf("line %d lacks %q: %s", i+1, s, lines[i])
			}
		}
	}
}

// countingHandler counts the Enabled questions at debug level, and the
// records handled, of a logger at info level.
type countingHandler struct {
	slog.Handler
	debugAsked, handled *atomic.Int64
}

func (h countingHandler) Enabled(ctx context.Context, l slog.Level) bool {
	if l == slog.LevelDebug {
		h.debugAsked.Add(1)
	}
	return h.Handler.Enabled(ctx, l)
}

func (h countingHandler) Handle(ctx context.Context, r slog.Record) error {
	h.handled.Add(1)
	return h.Handler.Handle(ctx, r)
}

func (h countingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return countingHandler{h.Handler.WithAttrs(as), h.debugAsked, h.handled}
}

func (h countingHandler) WithGroup(g string) slog.Handler {
	return countingHandler{h.Handler.WithGroup(g), h.debugAsked, h.handled}
}

// TestDebugStepsCostNothingAbove: above debug level a flow asks once
// whether debug is on, and logs its steps not at all: no record, no
// attribute built.
func TestDebugStepsCostNothingAbove(t *testing.T) {
	var out syncBuffer
	var asked, handled atomic.Int64
	h := countingHandler{slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelInfo}), &asked, &handled}
	target, servers := acceptAll(t)
	r := newFlowsRelay(t, &out, nil, target, nil)
	r.cfg.Logger = slog.New(h)
	q := newConnRequest(t, 1000)
	r.Handle(q)
	<-servers
	if n := asked.Load(); n != 1 {
		t.Errorf("debug level asked %d times for one flow; want once", n)
	}
	if n := handled.Load(); n != 1 || !strings.Contains(out.allLines()[0], `msg="flow accepted"`) {
		t.Errorf("%d records handled; want 1, flow accepted", n)
	}
}
