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

// reservedPortControl returns a dialer Control that binds the socket to a
// reserved source port of bind (the unspecified address if bind is not
// valid) before it connects, trying ReservedPortMax down to ReservedPortMin
// and skipping the ports in use (EADDRINUSE), as rresvport does. It
// returns ErrNoReservedPort if none is free. The dialer must then have no
// LocalAddr: the socket is bound here.
func reservedPortControl(bind netip.Addr) func(network, address string, c syscall.RawConn) error {
	var ip [4]byte
	if bind.Is4() {
		ip = bind.As4()
	}
	return func(network, address string, c syscall.RawConn) error {
		if err := oobInline(network, address, c); err != nil {
			return err
		}
		var berr error
		if err := c.Control(func(fd uintptr) { berr = bindReserved(int(fd), ip) }); err != nil {
			return err
		}
		return berr
	}
}

// bindReserved binds fd to the highest free reserved port of ip.
func bindReserved(fd int, ip [4]byte) error {
	sa := &unix.SockaddrInet4{Addr: ip}
	for port := ReservedPortMax; port >= ReservedPortMin; port-- {
		sa.Port = port
		err := unix.Bind(fd, sa)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, unix.EADDRINUSE):
			continue
		default:
			return fmt.Errorf("bind %s:%d: %w", netip.AddrFrom4(ip), port, err)
		}
	}
	return ErrNoReservedPort
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
