package relay

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"github.com/pires/go-proxyproto"
	"golang.org/x/sys/unix"
)

// The reserved source ports a flow to a PrivilegedPorts destination is
// given, as rresvport(3) and faithd -p gave them: the highest free one,
// counting down.
const (
	ReservedPortMin = 600
	ReservedPortMax = 1023
)

// ErrNoReservedPort means every reserved source port (ReservedPortMin to
// ReservedPortMax) of the address was in use when a flow needed one.
var ErrNoReservedPort = fmt.Errorf("no free reserved source port (%d-%d)", ReservedPortMin, ReservedPortMax)

// reasonNoReservedPort is the refusal reason of a flow that found no free
// reserved port.
const reasonNoReservedPort = "no-reserved-port"

// oobInline is the dialer's Control for every IPv4 connection: the kernel
// delivers urgent data (MSG_OOB) in line, in its place in the stream, so
// that a plain read gets every byte. Without it Linux keeps the urgent byte
// out of the stream for recv(MSG_OOB), and the relay, which never asks for
// it, would lose it; gVisor can send no urgent data to the client anyway
// (README, "Urgent data").
func oobInline(_, _ string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_OOBINLINE, 1)
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("setsockopt SO_OOBINLINE: %w", serr)
	}
	return nil
}

// dialReserved dials address with d from a reserved source port of bind
// (the unspecified address if bind is not valid), as rresvport does: the
// highest port the kernel lets it bind, counting down, skipping a port in
// use (EADDRINUSE at bind) and a port whose connection to address exists
// already (EADDRNOTAVAIL at connect). The socket has SO_REUSEADDR, so that
// a port whose sockets are only in TIME_WAIT can be bound again: without it
// a few hundred short flows would use up the 424 ports for a minute. Two
// flows may share a port then, to different servers, and a flow to a
// server whose 4-tuple on a port is still in TIME_WAIT gets the next port
// (or reuses the 4-tuple where the kernel allows, net.ipv4.tcp_tw_reuse).
// It returns ErrNoReservedPort if no port is left. dial makes one
// connection with a Dialer (d with the reserved port's Control); d must
// have no LocalAddr.
func dialReserved(d *net.Dialer, bind netip.Addr, dial func(*net.Dialer) (net.Conn, error)) (net.Conn, error) {
	var ip [4]byte
	if bind.Is4() {
		ip = bind.As4()
	}
	next := ReservedPortMax
	for {
		bound := 0
		try := *d
		try.Control = func(network, address string, c syscall.RawConn) error {
			if err := oobInline(network, address, c); err != nil {
				return err
			}
			var berr error
			if err := c.Control(func(fd uintptr) { bound, berr = bindReserved(int(fd), ip, next) }); err != nil {
				return err
			}
			return berr
		}
		nc, err := dial(&try)
		if err == nil || !errors.Is(err, unix.EADDRNOTAVAIL) || bound == 0 {
			return nc, err
		}
		// The connection from this port to address exists already (maybe
		// in TIME_WAIT): the next port down.
		if bound <= ReservedPortMin {
			return nil, ErrNoReservedPort
		}
		next = bound - 1
	}
}

// bindReserved sets SO_REUSEADDR on fd and binds it to the highest free
// reserved port of ip from from down, and returns the port.
func bindReserved(fd int, ip [4]byte, from int) (int, error) {
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return 0, fmt.Errorf("setsockopt SO_REUSEADDR: %w", err)
	}
	sa := &unix.SockaddrInet4{Addr: ip}
	for port := from; port >= ReservedPortMin; port-- {
		sa.Port = port
		err := unix.Bind(fd, sa)
		switch {
		case err == nil:
			return port, nil
		case errors.Is(err, unix.EADDRINUSE):
			continue
		default:
			return 0, fmt.Errorf("bind %s:%d: %w", netip.AddrFrom4(ip), port, err)
		}
	}
	return 0, ErrNoReservedPort
}

// proxyHeader returns the PROXY protocol v2 header of a flow (PROXY
// command, TCP over IPv6): the IPv6 client's address and port as the source,
// the FAITH address and port it connected to as the destination.
func proxyHeader(client, dest netip.AddrPort) ([]byte, error) {
	h := proxyproto.HeaderProxyFromAddrs(2, net.TCPAddrFromAddrPort(client), net.TCPAddrFromAddrPort(dest))
	b, err := h.Format()
	if err != nil {
		return nil, fmt.Errorf("PROXY protocol header: %w", err)
	}
	return b, nil
}
