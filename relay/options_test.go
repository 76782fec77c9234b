package relay

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
	"golang.org/x/sys/unix"
)

// reservedPortsAvailable skips the test unless the process may bind
// ports below 1024 (CAP_NET_BIND_SERVICE: root).
func reservedPortsAvailable(t *testing.T) {
	t.Helper()
	l, err := net.Listen("tcp4", "127.86.18.1:1023")
	if errors.Is(err, unix.EACCES) {
		t.Skip("binding a reserved port needs CAP_NET_BIND_SERVICE (root)")
	}
	if err == nil {
		l.Close()
	}
}

// TestPerPortOptions: a flow to a PrivilegedPorts port reaches the server
// from a reserved source port, one to a ProxyProtocolPorts port starts with
// a PROXY protocol v2 header naming the IPv6 client and the FAITH address,
// and a flow to any other port gets neither.
func TestPerPortOptions(t *testing.T) {
	reservedPortsAvailable(t)
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var out syncBuffer
	var events []string
	r := testRelay(t, &out, l.Addr().String(), &events)
	r.cfg.PrivilegedPorts = []uint16{513}
	r.cfg.ProxyProtocolPorts = []uint16{25}

	accept := func() *net.TCPConn {
		t.Helper()
		l.(*net.TCPListener).SetDeadline(time.Now().Add(10 * time.Second))
		c, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c.(*net.TCPConn)
	}
	for _, tc := range []struct {
		port            uint16
		reserved, proxy bool
	}{{513, true, false}, {25, false, true}, {80, false, false}} {
		q := request(&events, 3000+tc.port)
		q.dest = netip.AddrPortFrom(q.dest.Addr(), tc.port)
		r.Handle(q)
		if q.refused != 0 {
			t.Fatalf("port %d: refused (%v): %s", tc.port, q.how, out.lines())
		}
		c := accept()
		peer := c.RemoteAddr().(*net.TCPAddr).Port
		if got := peer >= ReservedPortMin && peer <= ReservedPortMax; got != tc.reserved {
			t.Errorf("port %d: the server's peer port is %d; reserved (600-1023) %v, want %v", tc.port, peer, got, tc.reserved)
		}
		c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		h, err := proxyproto.Read(bufio.NewReader(c))
		if !tc.proxy {
			if err == nil {
				t.Errorf("port %d: a PROXY header %+v; want none", tc.port, h)
			}
			continue
		}
		if err != nil {
			t.Fatalf("port %d: no PROXY header: %v", tc.port, err)
		}
		src, dst, ok := h.TCPAddrs()
		if h.Version != 2 || h.Command != proxyproto.PROXY || h.TransportProtocol != proxyproto.TCPv6 || !ok ||
			src.AddrPort() != q.client || dst.AddrPort() != q.dest {
			t.Errorf("PROXY header v%d %v %v %v -> %v; want v2 PROXY TCPv6 %v -> %v", h.Version, h.Command, h.TransportProtocol, src, dst, q.client, q.dest)
		}
	}
}

// TestNoReservedPort: with every reserved port of the bind address taken,
// the dial fails with ErrNoReservedPort, which refuses the flow with a RST
// and counts it as refused.
func TestNoReservedPort(t *testing.T) {
	reservedPortsAvailable(t)
	const addr = "127.86.18.2" // loopback, used by nothing else
	for port := ReservedPortMin; port <= ReservedPortMax; port++ {
		l, err := net.Listen("tcp4", net.JoinHostPort(addr, strconv.Itoa(port)))
		if err != nil {
			continue // taken already (a wildcard listener): just as good
		}
		defer l.Close()
	}
	target, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	c, err := dialReserved(&net.Dialer{}, netip.MustParseAddr(addr), func(d *net.Dialer) (net.Conn, error) {
		return d.DialContext(context.Background(), "tcp4", target.Addr().String())
	})
	if err == nil {
		c.Close()
		t.Fatalf("dialled from %v with every reserved port taken", c.LocalAddr())
	}
	if !errors.Is(err, ErrNoReservedPort) {
		t.Fatalf("error %v; want ErrNoReservedPort", err)
	}
	reason, answer := dialFailure(err)
	if reason != reasonNoReservedPort || answer.String() != "rst" || outcomeOf(reason) != OutcomeRefused {
		t.Errorf("reason %s, answer %v, outcome %v; want no-reserved-port, rst, refused", reason, answer, outcomeOf(reason))
	}

}

// TestReservedPortsReused: 500 sequential flows to one server from
// reserved ports all get one, though each closed connection leaves its
// port in TIME_WAIT (the relay's side closes first) and there are only
// 424: SO_REUSEADDR binds such a port again, and a connect refused for a
// 4-tuple still in use (EADDRNOTAVAIL) moves on to the next port.
func TestReservedPortsReused(t *testing.T) {
	reservedPortsAvailable(t)
	const addr = "127.86.18.3" // loopback, used by nothing else
	target, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	go func() {
		for {
			c, err := target.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(io.Discard, c); c.Close() }() // closes after the relay's side
		}
	}()
	ports := map[int]bool{}
	for i := range 500 {
		c, err := dialReserved(&net.Dialer{Timeout: 5 * time.Second}, netip.MustParseAddr(addr), func(d *net.Dialer) (net.Conn, error) {
			return d.DialContext(context.Background(), "tcp4", target.Addr().String())
		})
		if err != nil {
			t.Fatalf("flow %d: %v", i, err)
		}
		p := c.LocalAddr().(*net.TCPAddr).Port
		if p < ReservedPortMin || p > ReservedPortMax {
			t.Fatalf("flow %d from port %d, not a reserved one", i, p)
		}
		ports[p] = true
		c.Close() // TIME_WAIT on this side
	}
	t.Logf("500 flows from %d reserved ports", len(ports))
}

// TestOOBInline: every IPv4 connection the relay dials has SO_OOBINLINE
// set, so that urgent data is read in line and never lost.
func TestOOBInline(t *testing.T) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	r := New(Config{})
	defer r.Close()
	c, err := r.dialer.DialContext(context.Background(), "tcp4", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	raw, _ := c.(*net.TCPConn).SyscallConn()
	var v int
	var gerr error
	raw.Control(func(fd uintptr) { v, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_OOBINLINE) })
	if gerr != nil || v != 1 {
		t.Fatalf("SO_OOBINLINE %d (%v); want 1", v, gerr)
	}
}
