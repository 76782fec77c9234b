package flow

import (
	"context"
	"net/netip"
)

// Handler decides a captured flow. It runs on a goroutine of its own per
// flow and must call Accept or Refuse on the Request.
type Handler func(Request)

// Request is a captured flow whose handshake waits for a decision. Exactly
// one of Accept and Refuse is called.
type Request interface {
	// Client is the IPv6 client's address and port.
	Client() netip.AddrPort
	// Dest is the FAITH address and port the client connected to.
	Dest() netip.AddrPort
	// Accept completes the client's handshake and returns the connection.
	Accept() (Conn, error)
	// Refuse answers the client's SYN as how says.
	Refuse(how Refusal)
}

// Conn is one side of a relayed flow: the captured IPv6 connection, or the
// IPv4 connection dialled for it.
//
// Read reports the peer's FIN as io.EOF and the peer's RST as an error that
// matches syscall.ECONNRESET with errors.Is. CloseWrite sends a FIN and keeps
// the read direction open. Abort sends a RST and releases the connection;
// Close releases it after an orderly shutdown. Abort and Close may be called
// while a Read or Write is blocked, and either may be called more than once.
type Conn interface {
	Read(p []byte) (int, error)
	Write(p []byte) (int, error)
	CloseWrite() error
	Close() error
	Abort() error
}

// Refusal says how a refused flow is answered to the IPv6 client.
type Refusal int

// The ways to refuse a flow, with what a Linux client's connect() returns.
const (
	// RefuseReset answers the SYN with a TCP RST: ECONNREFUSED.
	RefuseReset Refusal = iota
	// RefuseProhibited sends ICMPv6 Destination Unreachable, code 1
	// (administratively prohibited): EACCES.
	RefuseProhibited
	// RefuseNoRoute sends ICMPv6 Destination Unreachable, code 0 (no route
	// to destination): ENETUNREACH.
	RefuseNoRoute
	// RefuseAddrUnreachable sends ICMPv6 Destination Unreachable, code 3
	// (address unreachable): EHOSTUNREACH.
	RefuseAddrUnreachable
	// RefusePortUnreachable sends ICMPv6 Destination Unreachable, code 4
	// (port unreachable): ECONNREFUSED.
	RefusePortUnreachable
	// RefuseDrop sends nothing, as a full SYN backlog does: the client
	// retransmits its SYN, which is decided again.
	RefuseDrop
)

var refusalNames = [...]string{
	RefuseReset:           "rst",
	RefuseProhibited:      "icmp6-prohibited",
	RefuseNoRoute:         "icmp6-no-route",
	RefuseAddrUnreachable: "icmp6-addr-unreachable",
	RefusePortUnreachable: "icmp6-port-unreachable",
	RefuseDrop:            "drop",
}

// String names the refusal as logs show it (answer=...).
func (r Refusal) String() string {
	if r < 0 || int(r) >= len(refusalNames) {
		return "unknown"
	}
	return refusalNames[r]
}

// Network is what an application relay (relay/ftp) needs of the stack
// beyond the flows it hands to the Handler: connections on FAITH addresses.
// A FAITH address is not the kernel's, it exists only inside the stack, so a
// data connection the relay announces on one (FTP's EPSV) is listened for
// there, and one the relay opens from one (FTP's EPRT) is opened there.
type Network interface {
	// Listen claims the flows the client address from opens to local, a
	// FAITH address and port, until the Listener is closed: they are handed
	// to the Listener instead of the Handler, as to a listening socket
	// bound to local that accepts only from. Flows to local from any other
	// address still go to the Handler. It fails if (from, local) is
	// claimed already.
	Listen(from netip.Addr, local netip.AddrPort) (Listener, error)
	// Dial opens a TCP connection from local, a FAITH address (port 0: a
	// free port), to remote, an IPv6 client, and returns it once it is
	// established, or the error (matching syscall.ECONNREFUSED,
	// EHOSTUNREACH, ENETUNREACH or ETIMEDOUT with errors.Is where it is
	// one of those, ctx's error when ctx ends first).
	Dial(ctx context.Context, local, remote netip.AddrPort) (Conn, error)
}

// Listener hands over the flows a Network.Listen claimed.
type Listener interface {
	// Accept returns the next claimed flow, its handshake waiting for
	// the caller's Accept or Refuse, or an error once ctx is done or the
	// Listener is closed.
	Accept(ctx context.Context) (Request, error)
	// Close ends the claim: flows still waiting to be accepted are
	// refused with a RST, later ones go to the Handler. It may be called
	// more than once.
	Close() error
}
