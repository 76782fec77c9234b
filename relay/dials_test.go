package relay

import (
	"context"
	"math"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/faithif/faithif/relay/flow"
)

// heldDials is a dialer (Relay.dialVia) to a server that drops SYNs: each
// dial waits until release is closed (or the relay closes), then fails
// with ECONNREFUSED.
type heldDials struct {
	started chan struct{} // one value per dial begun
	release chan struct{}
}

func newHeldDials() *heldDials {
	return &heldDials{started: make(chan struct{}, 1024), release: make(chan struct{})}
}

func (h *heldDials) dial(ctx context.Context, _ *net.Dialer, _ string) (net.Conn, error) {
	h.started <- struct{}{}
	select {
	case <-h.release:
	case <-ctx.Done():
	}
	return nil, syscall.ECONNREFUSED
}

// wait waits for n dials to have begun.
func (h *heldDials) wait(t *testing.T, n int) {
	t.Helper()
	for i := range n {
		select {
		case <-h.started:
		case <-time.After(5 * time.Second):
			t.Fatalf("%d dials begun; want %d", i, n)
		}
	}
}

// gatedRequest is a fakeRequest whose client completes its handshake only
// once gate is closed.
type gatedRequest struct {
	*fakeRequest
	gate chan struct{}
}

func (q gatedRequest) Accept() (flow.Conn, error) {
	<-q.gate
	return q.fakeRequest.Accept()
}

// handleAll starts Handle for each request in its own goroutine; the
// returned function waits for them all.
func handleAll(r *Relay, reqs ...flow.Request) (wait func()) {
	var wg sync.WaitGroup
	for _, q := range reqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.Handle(q)
		}()
	}
	return wg.Wait
}

// handleWithin handles q and fails the test if that takes 5 s (a dial held
// that should not have begun; the relay's Close at cleanup ends it).
func handleWithin(t *testing.T, r *Relay, q flow.Request) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Handle(q)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Handle still running after 5 s: a dial began that should not have")
	}
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestDialsCapped: IPv4 connections being set up are at most
// max_handshakes, whichever order the flow takes. Handshake-first flows
// (which have left the stack's handshake table at Accept) fill the cap with
// dials to a server that drops SYNs; one more handshake-first flow is
// reset after its handshake without a dial, a dial-first one is dropped as
// by a full handshake table; both are counted and logged as reason=dials.
// Once the dials end, flows dial again.
func TestDialsCapped(t *testing.T) {
	var out syncBuffer
	var events []string
	r := testRelay(t, &out, closedPort(t), &events) // max_handshakes 8, dial first below 2
	held := newHeldDials()
	r.dialVia = held.dial
	limit := r.cfg.Limits.MaxHandshakesTotal

	r.halfOpen.Store(int64(r.cfg.Limits.DialFirst())) // under pressure: handshake first
	var reqs []flow.Request
	var dialing []*fakeRequest
	for i := range limit {
		q := request(nil, uint16(4000+i))
		dialing = append(dialing, q)
		reqs = append(reqs, q)
	}
	waitHeld := handleAll(r, reqs...)
	held.wait(t, limit)
	if c := r.Counters(); c.DialsInProgress != int64(limit) || c.FlowsHandshakeFirst != uint64(limit) {
		t.Fatalf("dials_in_progress %d, flows_handshake_first %d; want %d, %d", c.DialsInProgress, c.FlowsHandshakeFirst, limit, limit)
	}

	// Handshake first, no room: accepted, then reset, never dialled.
	q := request(&events, 5000)
	handleWithin(t, r, q)
	if want := "accept"; strings.Join(events, ",") != want {
		t.Fatalf("over the cap, handshake first: events %q; want %s", events, want)
	}
	if !q.conn.wasAborted() {
		t.Fatal("over the cap, handshake first: the client's connection was not reset")
	}
	// Dial first, no room: the SYN is dropped, as by a full table.
	r.halfOpen.Store(0)
	events = nil
	q = request(&events, 5001)
	handleWithin(t, r, q)
	if want := "refuse drop"; strings.Join(events, ",") != want {
		t.Fatalf("over the cap, dial first: events %q; want %s", events, want)
	}
	select {
	case <-held.started:
		t.Fatal("a dial began beyond the cap")
	default:
	}
	c := r.Counters()
	if c.FlowsDialsLimited != 2 || c.FlowOutcomes["limited"] != 2 || c.FlowsLimited != 2 || c.DialsInProgress != int64(limit) {
		t.Fatalf("flows_dials_limited %d, limited %d, flows_limited %d, dials_in_progress %d; want 2, 2, 2, %d",
			c.FlowsDialsLimited, c.FlowOutcomes["limited"], c.FlowsLimited, c.DialsInProgress, limit)
	}
	lines := out.lines()
	if len(lines) != 2 || !strings.Contains(lines[0], "level=WARN") || !strings.Contains(lines[0], "reason=dials") ||
		!strings.Contains(lines[0], "after_handshake=true") || !strings.Contains(lines[0], "answer=rst") ||
		!strings.Contains(lines[1], "reason=dials") || !strings.Contains(lines[1], "answer=drop") {
		t.Fatalf("log %q; want two warnings reason=dials, after the handshake with a RST, then a drop", lines)
	}

	// The held dials fail: each client is reset, and the count comes back.
	close(held.release)
	waitHeld()
	for i, q := range dialing {
		if q.conn == nil || !q.conn.wasAborted() {
			t.Fatalf("flow %d: its client was not reset after its dial failed", i)
		}
	}
	if c := r.Counters(); c.DialsInProgress != 0 || c.FlowOutcomes["refused"] != uint64(limit) {
		t.Fatalf("after the dials: dials_in_progress %d, refused %d; want 0, %d", c.DialsInProgress, c.FlowOutcomes["refused"], limit)
	}
	events = nil
	handleWithin(t, r, request(&events, 5002))
	select {
	case <-held.started:
	default:
		t.Fatal("no dial once the cap was free")
	}
	if want := "refuse rst"; strings.Join(events, ",") != want {
		t.Fatalf("after the dials: events %q; want %s", events, want)
	}
	if n := r.halfOpen.Load(); n != 0 {
		t.Fatalf("%d half-open at the end", n)
	}
}

// TestFDReserveCountsDials: IPv4 connections being set up hold descriptors
// too. With a limit of fdReserve+4 descriptors and no flow open, four
// dials may be in progress; a fifth flow is refused (a RST, before its
// client's handshake). A flow that passed that check but whose client's
// handshake completed only once the descriptors were taken is checked
// again at its dial and reset.
func TestFDReserveCountsDials(t *testing.T) {
	var out syncBuffer
	var events []string
	r := testRelay(t, &out, closedPort(t), &events)
	held := newHeldDials()
	r.dialVia = held.dial
	r.fdLimitVal.Store(fdReserve + 4)
	r.fdLimitAt.Store(math.MaxInt64) // never reread

	r.halfOpen.Store(int64(r.cfg.Limits.DialFirst())) // handshake first
	late := gatedRequest{request(nil, 6100), make(chan struct{})}
	open := sync.OnceFunc(func() { close(late.gate) })
	t.Cleanup(open)                // before the relay's cleanup, should the test fail
	waitLate := handleAll(r, late) // passes the first check, waits in its handshake
	waitFor(t, "the late flow is in its handshake", func() bool { return r.halfOpen.Load() == int64(r.cfg.Limits.DialFirst())+1 })
	var reqs []flow.Request
	for i := range 4 {
		reqs = append(reqs, request(nil, uint16(6000+i)))
	}
	waitHeld := handleAll(r, reqs...)
	held.wait(t, 4)

	q := request(&events, 6004)
	handleWithin(t, r, q)
	if want := "refuse rst"; strings.Join(events, ",") != want {
		t.Fatalf("fifth flow: events %q; want %s (refused before the handshake)", events, want)
	}
	open()
	waitLate()
	if late.conn == nil || !late.conn.wasAborted() {
		t.Fatal("the late flow was not reset at its dial")
	}
	c := r.Counters()
	if c.FlowsFDLimit != 2 || c.DialsInProgress != 4 || c.FlowsOpen != 0 {
		t.Fatalf("flows_fd_limit %d, dials_in_progress %d, flows_open %d; want 2, 4, 0", c.FlowsFDLimit, c.DialsInProgress, c.FlowsOpen)
	}
	lines := out.lines()
	if len(lines) != 2 || !strings.Contains(lines[0], "reason=fd-limit") || !strings.Contains(lines[0], "dials_in_progress=4") ||
		!strings.Contains(lines[1], "reason=fd-limit") || !strings.Contains(lines[1], "after_handshake=true") {
		t.Fatalf("log %q; want two fd-limit refusals naming the 4 dials, the second after the handshake", lines)
	}
	close(held.release)
	waitHeld()
	if n := r.dialing.Load(); n != 0 {
		t.Fatalf("%d dials in progress at the end", n)
	}
}
