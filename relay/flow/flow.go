package flow

import "net/netip"

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
