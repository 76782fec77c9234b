// Package stack is faithif's gVisor half: the link endpoint between a TUN
// device and a gVisor netstack, the NIC that accepts every destination, the
// TCP forwarder that turns each captured SYN into a flow request, and the Conn
// that carries an accepted flow. It knows nothing of IPv4 sockets or rules.
//
// The inbound data path, file by file:
//
//   - read.go: the read loop reads the TUN device, in batches or, with the
//     virtio-net header (virtio.go), one TSO super-packet at a time.
//   - filter.go: the faith(4) capture filter (keepfaith, IPv6 TCP with
//     possible flags and ICMPv6 errors only, plausible sources) discards and
//     counts everything else, shows each SYN to the flow table (or the
//     challenge) and takes a RST answering a challenge.
//   - window.go: each flow's send window, followed from the segments
//     crossing the link endpoint both ways, against which a Packet Too Big
//     is checked (and its MTU raised to 1280) before gVisor sees it.
//   - flows.go: the flow table keeps the client's SYN while its flow is
//     decided and, for a 4-tuple whose connection is closing, takes the new
//     SYN and reopens the 4-tuple.
//   - link.go: the link endpoint injects the packet into gVisor (IPv6, TCP).
//   - forward.go: gVisor's TCP forwarder hands each new SYN to the forwarder
//     callback, which wraps it in a request and passes it to the
//     flow.Handler; the request's Accept completes the handshake, its Refuse
//     answers with a RST or an ICMPv6 error quoting the held SYN.
//   - pressure.go: whether the Stack is under pressure (a SYN flood), with
//     hysteresis; the half-open handshakes' budgets; the oldest half-open
//     handshake evicted for a new SYN when the table is nearly full.
//   - challenge.go: under pressure, a SYN from an address not validated is
//     answered by the link endpoint with a SYN-ACK carrying a cookie
//     (cookie.go) and dropped; the client's RST carrying it back validates
//     the address (validated.go).
//   - conn.go: an accepted flow is a Conn, read and written by the relay.
//   - listen.go, dial.go: the Stack as a flow.Network, for an application
//     relay's data connections on FAITH addresses: Listen claims the flows
//     of one client address to one FAITH address and port, which decide
//     then hands to the Listener instead of the handler; Dial opens a
//     connection from a FAITH address.
//
// The write path goes back the same way: a Conn's writes, gVisor's segments
// and ICMPv6 errors leave through the NIC's queueing discipline, the link
// endpoint itself (linkQDisc in link.go, no queue),
// which writes them to the TUN, as GSO super-packets behind a virtio-net
// header when the device has one. stack.go builds and runs the whole; counters.go
// reads its counters.
//
// stack imports one faithif package, relay/flow, and only that contract: a
// captured flow is handed over as a flow.Request, decided with a
// flow.Refusal, and carried as a flow.Conn. The contract lives beside the
// relay and imports only the standard library, so stack depends on no relay
// code, relay on no gVisor code, and a program embedding the stack can be
// another consumer.
package stack
