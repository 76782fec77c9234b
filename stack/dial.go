package stack

import (
	"context"
	"fmt"
	"net/netip"
	"syscall"

	"github.com/faithif/faithif/relay/flow"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
)

// Dial opens a TCP connection from local, a FAITH address (port 0: a free
// port), to remote, and returns it once established (flow.Network). The
// connection is a gVisor endpoint bound to the FAITH address, which the
// NIC's spoofing allows; its segments leave through the TUN device like any
// flow's. A failure matches syscall.ECONNREFUSED (the peer's RST),
// EHOSTUNREACH or ENETUNREACH (an ICMPv6 error) or ETIMEDOUT with
// errors.Is; if ctx ends first the attempt is abandoned and ctx's error
// returned.
func (s *Stack) Dial(ctx context.Context, local, remote netip.AddrPort) (flow.Conn, error) {
	switch {
	case !local.Addr().Is6() || local.Addr().Is4In6() || local.Addr().Zone() != "":
		return nil, fmt.Errorf("dial %s from %s: want an IPv6 address to dial from", remote, local)
	case !remote.Addr().Is6() || remote.Addr().Is4In6() || remote.Addr().Zone() != "" || remote.Port() == 0:
		return nil, fmt.Errorf("dial %s from %s: want an IPv6 address and a port to dial", remote, local)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("dial %s from %s: %w", remote, local, err)
	}
	c := newConn(stack.TransportEndpointID{
		LocalAddress: tcpip.AddrFrom16(local.Addr().As16()), LocalPort: local.Port(),
		RemoteAddress: tcpip.AddrFrom16(remote.Addr().As16()), RemotePort: remote.Port(),
	})
	ep, terr := s.gs.NewEndpoint(tcp.ProtocolNumber, ipv6.ProtocolNumber, &c.wq)
	if terr != nil {
		c.unregister()
		return nil, fmt.Errorf("dial %s from %s: %s", remote, local, terr)
	}
	fail := func(err error) (flow.Conn, error) {
		ep.Close()
		c.unregister()
		return nil, fmt.Errorf("dial %s from %s: %w", remote, local, err)
	}
	if terr := ep.Bind(tcpip.FullAddress{Addr: c.id.LocalAddress, Port: local.Port()}); terr != nil {
		return fail(fmt.Errorf("bind: %s", terr))
	}
	c.setEndpoint(ep)
	terr = ep.Connect(tcpip.FullAddress{NIC: nicID, Addr: c.id.RemoteAddress, Port: remote.Port()})
	if _, ok := terr.(*tcpip.ErrConnectStarted); ok {
		// The endpoint notifies its writers once the handshake is over,
		// either way (gonet's DialTCPWithBind waits so too).
		for tcp.EndpointState(ep.State()) == tcp.StateConnecting || tcp.EndpointState(ep.State()) == tcp.StateSynSent {
			select {
			case <-c.writeCh:
			case <-ctx.Done():
				ep.Abort()
				return fail(ctx.Err())
			}
		}
		terr = ep.LastError()
	}
	if terr != nil {
		return fail(dialErrno(terr))
	}
	if st := tcp.EndpointState(ep.State()); st != tcp.StateEstablished {
		return fail(fmt.Errorf("connection %s after the handshake", st))
	}
	if a, err := ep.GetLocalAddress(); err == nil {
		c.id.LocalPort = a.Port
	}
	return c, nil
}

// dialErrno turns a failed connect's gVisor error into the errno a kernel
// socket reports for it.
func dialErrno(err tcpip.Error) error {
	switch err.(type) {
	case *tcpip.ErrConnectionRefused, *tcpip.ErrConnectionReset:
		return syscall.ECONNREFUSED
	case *tcpip.ErrHostUnreachable, *tcpip.ErrHostDown:
		return syscall.EHOSTUNREACH
	case *tcpip.ErrNetworkUnreachable, *tcpip.ErrNoNet:
		return syscall.ENETUNREACH
	case *tcpip.ErrTimeout:
		return syscall.ETIMEDOUT
	}
	return fmt.Errorf("%s", err)
}
