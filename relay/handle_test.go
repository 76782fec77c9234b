package relay

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/faithif/faithif/relay/flow"
)

// fakeRequest is a flow.Request that records how it was decided, in the
// order of the test's events.
type fakeRequest struct {
	client, dest netip.AddrPort
	events       *[]string // shared with the test's dialer; nil: not recorded
	refused      int
	how          flow.Refusal
	acceptErr    error
	conn         *fakeConn
}

func (q *fakeRequest) Client() netip.AddrPort { return q.client }
func (q *fakeRequest) Dest() netip.AddrPort   { return q.dest }

func (q *fakeRequest) event(e string) {
	if q.events != nil {
		*q.events = append(*q.events, e)
	}
}

func (q *fakeRequest) Accept() (flow.Conn, error) {
	q.event("accept")
	if q.acceptErr != nil {
		return nil, q.acceptErr
	}
	q.conn = newFakeConn()
	return q.conn, nil
}

func (q *fakeRequest) Refuse(how flow.Refusal) {
	q.event("refuse " + how.String())
	q.refused++
	q.how = how
}

// fakeConn is an accepted client connection that sends nothing: its Read
// waits until it is closed or aborted.
type fakeConn struct {
	once    sync.Once
	done    chan struct{}
	mu      sync.Mutex
	aborted bool
}

func newFakeConn() *fakeConn { return &fakeConn{done: make(chan struct{})} }

func (c *fakeConn) Read([]byte) (int, error) {
	<-c.done
	return 0, syscall.ECONNRESET
}
func (c *fakeConn) Write(p []byte) (int, error) { return len(p), nil }
func (c *fakeConn) CloseWrite() error           { return nil }
func (c *fakeConn) Close() error                { c.once.Do(func() { close(c.done) }); return nil }
func (c *fakeConn) Abort() error {
	c.mu.Lock()
	c.aborted = true
	c.mu.Unlock()
	return c.Close()
}

func (c *fakeConn) wasAborted() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.aborted
}

// testRelay returns a relay for 2001:db8:46::/96 (no access file) whose
// dials go to target, recording "dial" in events.
func testRelay(t *testing.T, out *syncBuffer, target string, events *[]string) *Relay {
	t.Helper()
	m, err := NewMapper(netip.MustParsePrefix("2001:db8:46::/96"))
	if err != nil {
		t.Fatal(err)
	}
	r := New(Config{Mapper: m, Logger: textLogger(out), Limits: Limits{MaxHandshakesTotal: 8}})
	r.dialVia = func(ctx context.Context, d *net.Dialer, _ string) (net.Conn, error) {
		*events = append(*events, "dial")
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

// closedPort returns a local address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func request(events *[]string, port uint16) *fakeRequest {
	return &fakeRequest{
		client: netip.AddrPortFrom(netip.MustParseAddr("2001:db8:1::2"), port),
		dest:   netip.MustParseAddrPort("[2001:db8:46::c000:202]:80"),
		events: events,
	}
}

// TestRefusalRemembered: a SYN of a 4-tuple whose dial was refused a moment
// ago gets the same answer without a second dial, and is not a second flow.
func TestRefusalRemembered(t *testing.T) {
	var out syncBuffer
	var events []string
	r := testRelay(t, &out, closedPort(t), &events)

	r.Handle(request(&events, 1000))
	r.Handle(request(&events, 1000)) // the retransmitted SYN
	if want := "dial,refuse rst,refuse rst"; strings.Join(events, ",") != want {
		t.Fatalf("events %q; want %s", events, want)
	}
	c := r.Counters()
	if c.FlowsTotal != 1 || c.FlowOutcomes["refused"] != 1 || c.RefusalsRepeated != 1 {
		t.Fatalf("flows_total %d, refused %d, refusals_repeated %d; want 1, 1, 1", c.FlowsTotal, c.FlowOutcomes["refused"], c.RefusalsRepeated)
	}
	events = nil
	r.Handle(request(&events, 1001)) // another 4-tuple is decided afresh
	if want := "dial,refuse rst"; strings.Join(events, ",") != want {
		t.Fatalf("another port: events %q; want %s", events, want)
	}
	lines := out.lines()
	if len(lines) != 3 || !strings.Contains(lines[0], "reason=connection-refused") ||
		!strings.Contains(lines[1], `level=DEBUG msg="flow refused again"`) || !strings.Contains(lines[2], "reason=connection-refused") {
		t.Fatalf("log: %q; want a refusal, the repeat at debug level, a refusal", lines)
	}
}

// TestUnderPressure: once a quarter of the handshake table is half-open,
// the relay checks the policy, completes the client's handshake, and only
// then dials; a failed dial resets the client and is counted under its
// outcome.
func TestUnderPressure(t *testing.T) {
	var out syncBuffer
	var events []string
	r := testRelay(t, &out, closedPort(t), &events)
	r.halfOpen.Store(int64(r.cfg.Limits.DialFirst())) // as if 2 handshakes were half-open

	q := request(&events, 2000)
	r.Handle(q)
	if want := "accept,dial"; strings.Join(events, ",") != want {
		t.Fatalf("events %q; want %s", events, want)
	}
	if !q.conn.wasAborted() {
		t.Fatal("the client's connection was not reset after the dial failed")
	}
	c := r.Counters()
	if c.FlowOutcomes["refused"] != 1 || c.FlowsHandshakeFirst != 1 || c.FlowsOpen != 0 {
		t.Fatalf("refused %d, flows_handshake_first %d, open %d; want 1, 1, 0", c.FlowOutcomes["refused"], c.FlowsHandshakeFirst, c.FlowsOpen)
	}
	lines := out.lines()
	if len(lines) != 1 || !strings.Contains(lines[0], "after_handshake=true") || !strings.Contains(lines[0], "answer=rst") || !strings.Contains(lines[0], "reason=connection-refused") {
		t.Fatalf("log %q; want one refusal with after_handshake=true answer=rst", lines)
	}

	// The policy is checked before the handshake: a denied flow is not
	// accepted.
	events = nil
	deny := request(&events, 2001)
	deny.dest = netip.MustParseAddrPort("[2001:db8:46::7f00:1]:80")
	r.Handle(deny)
	if want := "refuse rst"; strings.Join(events, ",") != want {
		t.Fatalf("denied under pressure: events %q; want %s", events, want)
	}

	// A client that never completes its handshake costs no dial.
	events = nil
	gone := request(&events, 2002)
	gone.acceptErr = errors.New("handshake: timed out")
	r.Handle(gone)
	if want := "accept"; strings.Join(events, ",") != want {
		t.Fatalf("spoofed client: events %q; want %s", events, want)
	}

	if n := r.halfOpen.Load(); n != int64(r.cfg.Limits.DialFirst()) {
		t.Fatalf("%d half-open after three flows; want the %d set up by the test", n, r.cfg.Limits.DialFirst())
	}
	out.lines()

	// A server that answers: the flow is relayed.
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		if c, err := l.Accept(); err == nil {
			defer c.Close()
			c.Read(make([]byte, 1))
		}
	}()
	events = nil
	r2 := testRelay(t, &out, l.Addr().String(), &events)
	r2.halfOpen.Store(int64(r2.cfg.Limits.DialFirst()))
	r2.Handle(request(&events, 2003))
	if want := "accept,dial"; strings.Join(events, ",") != want {
		t.Fatalf("events %q; want %s", events, want)
	}
	if c := r2.Counters(); c.FlowsAccepted != 1 || c.FlowsOpen != 1 || c.FlowsHandshakeFirst != 1 {
		t.Fatalf("accepted %d, open %d, handshake first %d; want 1, 1, 1", c.FlowsAccepted, c.FlowsOpen, c.FlowsHandshakeFirst)
	}
	if lines := out.lines(); len(lines) != 1 || !strings.Contains(lines[0], `msg="flow accepted"`) || !strings.Contains(lines[0], "after_handshake=true") {
		t.Fatalf("log %q; want flow accepted with after_handshake=true", lines)
	}
}

// TestDialFirstBound: below the bound flows dial first, and the count of
// flows dialling comes back to zero.
func TestDialFirstBound(t *testing.T) {
	var out syncBuffer
	var events []string
	r := testRelay(t, &out, closedPort(t), &events)
	r.Handle(request(&events, 3000))
	if want := "dial,refuse rst"; strings.Join(events, ",") != want {
		t.Fatalf("events %q; want %s", events, want)
	}
	if n := r.halfOpen.Load(); n != 0 {
		t.Fatalf("%d half-open after the flow was decided", n)
	}
	if c := r.Counters(); c.FlowsHandshakeFirst != 0 {
		t.Fatalf("flows_handshake_first %d without pressure", c.FlowsHandshakeFirst)
	}
}

func TestRecentRefusals(t *testing.T) {
	var r recentRefusals
	now := time.Unix(1_700_000_000, 0)
	tuple := func(i int) fourTuple {
		return fourTuple{
			client: netip.AddrPortFrom(netip.MustParseAddr("2001:db8:1::2"), uint16(i)),
			dest:   netip.MustParseAddrPort("[2001:db8:46::c000:202]:80"),
		}
	}
	r.remember(tuple(1), flow.RefuseAddrUnreachable, "timeout", now)
	if how, reason, ok := r.lookup(tuple(1), now.Add(recentFor-time.Millisecond)); !ok || how != flow.RefuseAddrUnreachable || reason != "timeout" {
		t.Fatalf("lookup within %v = %v %q %v", recentFor, how, reason, ok)
	}
	if _, _, ok := r.lookup(tuple(1), now.Add(recentFor)); ok {
		t.Fatal("remembered past its time")
	}
	if _, _, ok := r.lookup(tuple(2), now); ok {
		t.Fatal("a 4-tuple never refused is remembered")
	}
	// Full: the oldest goes first.
	for i := range recentMax + 10 {
		r.remember(tuple(100+i), flow.RefuseReset, "connection-refused", now.Add(time.Millisecond))
	}
	if len(r.m) != recentMax || r.n != recentMax {
		t.Fatalf("%d (%d) remembered; want at most %d", len(r.m), r.n, recentMax)
	}
	if _, _, ok := r.lookup(tuple(100), now); ok {
		t.Fatal("the oldest was kept past the cap")
	}
	if _, _, ok := r.lookup(tuple(100+recentMax+9), now); !ok {
		t.Fatal("the newest was forgotten")
	}
	// Once everything has expired, the memory goes.
	r.remember(tuple(1), flow.RefuseReset, "connection-refused", now.Add(time.Hour))
	if len(r.m) != 1 || len(r.ring) != 64 {
		t.Fatalf("after expiry: %d remembered in a ring of %d; want 1 in 64", len(r.m), len(r.ring))
	}
}
