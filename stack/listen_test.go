package stack

import (
	"context"
	"errors"
	"io"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/faithif/faithif/relay/flow"
)

// wire carries what each of two memDevices writes to the other's input:
// two Stacks back to back, each the other's network.
func wire(t *testing.T, a, b *memDevice) {
	t.Helper()
	pump := func(from, to *memDevice) {
		for {
			select {
			case p := <-from.out:
				select {
				case to.in <- p:
				case <-to.done:
					return
				}
			case <-from.done:
				return
			}
		}
	}
	go pump(a, b)
	go pump(b, a)
}

// handledFlows is a flow.Handler that passes each request on a channel for
// the test to decide, and waits for the decision.
func handledFlows() (flow.Handler, chan flow.Request) {
	ch := make(chan flow.Request, 16)
	return func(r flow.Request) {
		d := &decidedReq{Request: r, done: make(chan struct{})}
		ch <- d
		<-d.done
	}, ch
}

// decidedReq is a request whose decision closes done.
type decidedReq struct {
	flow.Request
	done chan struct{}
}

func (r *decidedReq) Accept() (flow.Conn, error) {
	defer close(r.done)
	return r.Request.Accept()
}

func (r *decidedReq) Refuse(how flow.Refusal) {
	defer close(r.done)
	r.Request.Refuse(how)
}

var (
	faithAddr  = netip.MustParseAddr("2001:db8:46::c000:202")
	clientAddr = netip.MustParseAddr("2001:db8:1::2")
	otherAddr  = netip.MustParseAddr("2001:db8:1::3")
)

// twoStacks returns the FAITH side (a) and a client side (b), wired back to
// back, with the requests each one's handler gets.
func twoStacks(t *testing.T) (a, b *Stack, aFlows, bFlows chan flow.Request) {
	t.Helper()
	ha, aFlows := handledFlows()
	hb, bFlows := handledFlows()
	a, da := newTestStack(t, ha)
	b, db := newTestStack(t, hb)
	wire(t, da, db)
	return a, b, aFlows, bFlows
}

func nextFlow(t *testing.T, ch chan flow.Request) flow.Request {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(hangGuard):
		t.Fatal("no flow")
		return nil
	}
}

// exchange checks that bytes go both ways between x and y.
func exchange(t *testing.T, x, y flow.Conn) {
	t.Helper()
	go x.Write([]byte("ping"))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(readerOf(y), buf); err != nil || string(buf) != "ping" {
		t.Fatalf("read %q, %v", buf, err)
	}
	go y.Write([]byte("pong"))
	if _, err := io.ReadFull(readerOf(x), buf); err != nil || string(buf) != "pong" {
		t.Fatalf("read %q, %v", buf, err)
	}
}

type connReader struct{ c flow.Conn }

func (r connReader) Read(p []byte) (int, error) { return r.c.Read(p) }

func readerOf(c flow.Conn) io.Reader { return connReader{c} }

func TestDialFromFAITHAddress(t *testing.T) {
	a, _, _, bFlows := twoStacks(t)
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()

	type dialed struct {
		c   flow.Conn
		err error
	}
	ch := make(chan dialed, 1)
	go func() {
		c, err := a.Dial(ctx, netip.AddrPortFrom(faithAddr, 0), netip.AddrPortFrom(clientAddr, 40001))
		ch <- dialed{c, err}
	}()
	r := nextFlow(t, bFlows) // the client's side sees the FAITH address connect
	if r.Client().Addr() != faithAddr || r.Dest() != netip.AddrPortFrom(clientAddr, 40001) || r.Client().Port() == 0 {
		t.Fatalf("client side got %s -> %s", r.Client(), r.Dest())
	}
	bc, err := r.Accept()
	if err != nil {
		t.Fatal(err)
	}
	d := <-ch
	if d.err != nil {
		t.Fatalf("Dial: %v", d.err)
	}
	exchange(t, d.c, bc)
	d.c.Close()
	bc.Close()

	// Refused: ECONNREFUSED.
	go func() {
		_, err := a.Dial(ctx, netip.AddrPortFrom(faithAddr, 2000), netip.AddrPortFrom(clientAddr, 40002))
		ch <- dialed{nil, err}
	}()
	r = nextFlow(t, bFlows)
	if r.Client() != netip.AddrPortFrom(faithAddr, 2000) {
		t.Errorf("dialled from %s, want [%s]:2000", r.Client(), faithAddr)
	}
	r.Refuse(flow.RefuseReset)
	if d := <-ch; !errors.Is(d.err, syscall.ECONNREFUSED) {
		t.Errorf("Dial refused: %v, want ECONNREFUSED", d.err)
	}

	// No answer: the context's error.
	short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancelShort()
	go func() {
		_, err := a.Dial(short, netip.AddrPortFrom(faithAddr, 0), netip.AddrPortFrom(clientAddr, 40003))
		ch <- dialed{nil, err}
	}()
	r = nextFlow(t, bFlows)
	r.Refuse(flow.RefuseDrop)
	if d := <-ch; !errors.Is(d.err, context.DeadlineExceeded) {
		t.Errorf("Dial unanswered: %v, want the context's deadline", d.err)
	}

	for _, bad := range [][2]string{{"192.0.2.1:0", "[2001:db8:1::2]:1"}, {"[2001:db8:46::1]:0", "[2001:db8:1::2]:0"}, {"[::ffff:192.0.2.1]:0", "[2001:db8:1::2]:1"}} {
		if _, err := a.Dial(ctx, netip.MustParseAddrPort(bad[0]), netip.MustParseAddrPort(bad[1])); err == nil {
			t.Errorf("Dial(%s, %s) succeeded", bad[0], bad[1])
		}
	}
}

func TestListenClaimsOneClient(t *testing.T) {
	a, b, aFlows, _ := twoStacks(t)
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	local := netip.AddrPortFrom(faithAddr, 50000)
	ln, err := a.Listen(clientAddr, local)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Listen(clientAddr, local); err == nil {
		t.Error("a second Listen of the same claim succeeded")
	}

	var conns []flow.Conn
	defer func() {
		for _, c := range conns {
			c.Abort()
		}
	}()
	dial := func(from netip.Addr) chan error {
		ch := make(chan error, 1)
		go func() {
			c, err := b.Dial(ctx, netip.AddrPortFrom(from, 0), local)
			if err == nil {
				conns = append(conns, c) // read after <-ch
			}
			ch <- err
		}()
		return ch
	}
	// The claimed client's flow goes to the Listener.
	done := dial(clientAddr)
	r, err := ln.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r.Client().Addr() != clientAddr || r.Dest() != local {
		t.Fatalf("claimed %s -> %s", r.Client(), r.Dest())
	}
	c, err := r.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("the client's connect: %v", err)
	}
	exchange(t, c, conns[0])
	c.Abort()

	// Another client's flow to the same address and port, while the
	// claim is open, is reset and counted: it never reaches the Handler
	// (which would relay it to the server's data port as the client's).
	done = dial(otherAddr)
	if err := <-done; !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("other client: %v, want ECONNREFUSED", err)
	}
	if n := a.Counters().ClaimedFlowsRefused; n != 1 {
		t.Errorf("ClaimedFlowsRefused = %d, want 1", n)
	}
	select {
	case r := <-aFlows:
		t.Fatalf("the Handler got %s -> %s, a flow to a claimed port", r.Client(), r.Dest())
	default:
	}
	// Another port of the same FAITH address is not claimed.
	other := netip.AddrPortFrom(faithAddr, 50001)
	go func() {
		c, err := b.Dial(ctx, netip.AddrPortFrom(otherAddr, 0), other)
		if err == nil {
			c.Abort()
		}
	}()
	if r := nextFlow(t, aFlows); r.Dest() != other {
		t.Fatalf("handler got %s", r.Dest())
	} else {
		r.Refuse(flow.RefuseReset)
	}

	// A flow waiting when the Listener closes is reset; after, the
	// claimed client's flows are the Handler's again.
	done = dial(clientAddr)
	waitFor(t, func() bool { return len(ln.(*Listener).ch) == 1 })
	ln.Close()
	if err := <-done; !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("flow waiting at Close: %v, want ECONNREFUSED", err)
	}
	if _, err := ln.Accept(ctx); !errors.Is(err, ErrListenerClosed) {
		t.Errorf("Accept after Close: %v", err)
	}
	done = dial(clientAddr)
	r = nextFlow(t, aFlows)
	r.Refuse(flow.RefuseReset)
	<-done
	done = dial(otherAddr) // and so are the other clients'
	if r = nextFlow(t, aFlows); r.Client().Addr() != otherAddr {
		t.Fatalf("handler got %s", r.Client())
	}
	r.Refuse(flow.RefuseReset)
	<-done

	// Accept ends with its context.
	ln, _ = a.Listen(clientAddr, local)
	short, cancelShort := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancelShort()
	if _, err := ln.Accept(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Accept past its context: %v", err)
	}
	ln.Close()
	for _, bad := range [][2]string{{"192.0.2.1", "[2001:db8:46::1]:1"}, {"2001:db8:1::2", "[2001:db8:46::1]:0"}, {"2001:db8:1::2", "192.0.2.1:21"}} {
		if _, err := a.Listen(netip.MustParseAddr(bad[0]), netip.MustParseAddrPort(bad[1])); err == nil {
			t.Errorf("Listen(%s, %s) succeeded", bad[0], bad[1])
		}
	}
}

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(time.Millisecond)
	}
}
