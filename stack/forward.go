package stack

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/faithif/faithif/relay/flow"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/header/parse"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
)

// forward is the gVisor forwarder's callback for a new SYN, on a goroutine
// gVisor starts for it: it hands the flow on to decide (a reused goroutine,
// whose stack has already grown for a dial and a handshake) and returns.
func (s *Stack) forward(fr *tcp.ForwarderRequest) {
	s.workers.Go(func() { s.decide(fr) })
}

// decide hands the flow to the Listener that claims it (listen.go), or else
// to the handler, as a request; one the handler returns from without
// deciding is refused with a RST.
func (s *Stack) decide(fr *tcp.ForwarderRequest) {
	s.inFlight.Add(1)
	id := fr.ID()
	r := &request{
		client: netip.AddrPortFrom(addrOf(id.RemoteAddress), id.RemotePort),
		dest:   netip.AddrPortFrom(addrOf(id.LocalAddress), id.LocalPort),
		fr:     fr,
		s:      s,
		id:     id,
		entry:  s.flows.decide(id),
	}
	if s.claim(r) {
		return // the Listener's to decide now
	}
	defer func() {
		if r.fr != nil {
			r.Refuse(flow.RefuseReset)
		}
	}()
	s.handler(r)
}

// addrOf converts a gVisor address to a netip.Addr.
func addrOf(a tcpip.Address) netip.Addr {
	return netip.AddrFrom16(a.As16())
}

// rejectWith maps the refusals answered with an ICMPv6 error to gVisor's
// rejection types.
var rejectWith = map[flow.Refusal]stack.RejectIPv6WithICMPType{
	flow.RefuseProhibited:      stack.RejectIPv6WithICMPAdminProhibited,
	flow.RefuseNoRoute:         stack.RejectIPv6WithICMPNoRoute,
	flow.RefuseAddrUnreachable: stack.RejectIPv6WithICMPAddrUnreachable,
	flow.RefusePortUnreachable: stack.RejectIPv6WithICMPPortUnreachable,
}

// request is a captured flow before its handshake completes, like a
// connection waiting in an IPV6_FAITH listener: the flow.Request a Stack
// hands to its handler. Exactly one of Accept and Refuse must be called.
type request struct {
	client netip.AddrPort // the IPv6 client's address and port
	dest   netip.AddrPort // the FAITH address and port it asked for

	fr    *tcp.ForwarderRequest // nil once decided
	s     *Stack
	id    stack.TransportEndpointID
	entry *flowEntry // the flow's entry in s.flows, holding its SYN

	// Its place in s.halfOpen while Accept waits for the handshake;
	// guarded by s.halfOpen.mu.
	hsPrev, hsNext *request
	hsAt           time.Time
	hsListed       bool
}

var _ flow.Request = (*request)(nil)

// Client returns the IPv6 client's address and port.
func (r *request) Client() netip.AddrPort { return r.client }

// Dest returns the IPv6 destination the client asked for: a FAITH address.
func (r *request) Dest() netip.AddrPort { return r.dest }

// Accept completes the handshake and returns the connection, a *Conn.
func (r *request) Accept() (flow.Conn, error) {
	if r.fr == nil {
		return nil, fmt.Errorf("accept %s: request already decided", r.client)
	}
	fr := r.fr
	r.fr = nil
	defer r.s.inFlight.Add(-1)
	c := newConn(r.id)
	// Listed while the handshake waits, for eviction (pressure.go).
	if !r.s.halfOpen.add(r) {
		r.s.flows.decided(r.id, r.entry, nil)
		fr.Complete(true)
		c.unregister()
		return nil, fmt.Errorf("accept %s: the stack is closing", r.client)
	}
	ep, err := fr.CreateEndpoint(&c.wq)
	r.s.halfOpen.remove(r)
	if err != nil {
		r.s.flows.decided(r.id, r.entry, nil)
		fr.Complete(false)
		c.unregister()
		return nil, fmt.Errorf("accept %s: handshake: %s", r.client, err)
	}
	c.setEndpoint(ep)
	r.s.flows.decided(r.id, r.entry, c)
	fr.Complete(false)
	return c, nil
}

// Refuse refuses the flow as how says. If no SYN is held to quote in an
// ICMPv6 error, a RST is sent instead. ICMPv6 errors are rate-limited by
// gVisor (a token bucket); a suppressed one leaves the client to retransmit
// its SYN, which is decided again.
func (r *request) Refuse(how flow.Refusal) {
	if r.fr == nil {
		return
	}
	fr := r.fr
	r.fr = nil
	defer r.s.inFlight.Add(-1)
	syn := r.s.flows.decided(r.id, r.entry, nil)
	if how == flow.RefuseDrop {
		fr.Complete(false)
		return
	}
	// nil also when the rate limit suppressed the error: the client's
	// retransmitted SYN is then decided again.
	if how != flow.RefuseReset && syn != nil && r.s.sendRejection(syn, rejectWith[how]) == nil {
		fr.Complete(false)
		return
	}
	fr.Complete(true)
}

// sendRejection sends the ICMPv6 error with answering syn, the client's SYN
// (its IPv6 header and payload). The SYN is parsed into a packet buffer as
// gVisor's IPv6 layer parses an inbound one, which is what gVisor's
// rejection (network/ipv6 returnError) reads: the network and transport
// headers, the payload, the NIC it came in on.
func (s *Stack) sendRejection(syn []byte, with stack.RejectIPv6WithICMPType) tcpip.Error {
	rej, ok := s.gs.NetworkProtocolInstance(header.IPv6ProtocolNumber).(stack.RejectIPv6WithHandler)
	if !ok {
		return &tcpip.ErrNotSupported{}
	}
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(syn)})
	defer pkt.DecRef()
	if proto, _, _, _, ok := parse.IPv6(pkt); !ok || proto != header.TCPProtocolNumber || !parse.TCP(pkt) {
		return &tcpip.ErrMalformedHeader{}
	}
	pkt.NICID = nicID
	return rej.SendRejectionError(pkt, with, true)
}
