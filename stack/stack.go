package stack

import (
	"context"
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/tun"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
)

// nicID is the one NIC of a Stack.
const nicID tcpip.NICID = 1

// Defaults for Options fields left zero.
const (
	DefaultMaxInFlight     = 1024
	DefaultTimeWaitTimeout = 10 * time.Second
)

// Options configures a Stack.
type Options struct {
	// MTU of the link; the TUN device's MTU.
	MTU int
	// MaxInFlight bounds the flows waiting for a decision (handshakes in
	// progress); SYNs beyond it are dropped and the client retries.
	MaxInFlight int
	// TimeWaitTimeout is how long a flow closed first by the relay stays in
	// TIME_WAIT. A new SYN for the same 4-tuple reopens it at once.
	TimeWaitTimeout time.Duration
}

// Handler decides a captured flow. It runs on a goroutine of its own per
// flow and must call Accept or Refuse on the Request; if it returns without
// doing either, the flow is refused with a RST.
type Handler func(*Request)

// Stats counts the Stack's flows. All fields are safe for concurrent use.
type Stats struct {
	InFlight atomic.Int64 // handshakes waiting for a decision
}

// Stack is a gVisor netstack bound to one TUN device that captures every
// IPv6 TCP flow reaching it, whatever its destination, as an IPV6_FAITH
// listener does on BSD.
type Stack struct {
	gs      *stack.Stack
	link    *LinkEndpoint
	handler Handler
	reopen  reopenTable
	// timeWait is how long a closed flow's endpoint stays in TIME_WAIT.
	timeWait time.Duration
	syns     synTable
	stats    Stats
}

// New returns a Stack reading from and writing to dev that hands each
// captured flow to handler. Capturing starts off; see LinkEndpoint.SetCapture.
func New(dev tun.Device, handler Handler, opts Options) (*Stack, error) {
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = DefaultMaxInFlight
	}
	if opts.TimeWaitTimeout <= 0 {
		opts.TimeWaitTimeout = DefaultTimeWaitTimeout
	}
	gs := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv6.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol},
	})
	s := &Stack{gs: gs, handler: handler, link: NewLinkEndpoint(dev, opts.MTU), timeWait: opts.TimeWaitTimeout}
	s.reopen.inject = s.link.inject
	s.link.synHook = s.reopen.syn

	if err := s.configure(); err != nil {
		gs.Destroy()
		return nil, err
	}
	gs.SetRouteTable([]tcpip.Route{{Destination: header.IPv6EmptySubnet, NIC: nicID}})

	fwd := tcp.NewForwarder(gs, 0, opts.MaxInFlight, s.forward)
	gs.SetTransportProtocolHandler(tcp.ProtocolNumber, func(id stack.TransportEndpointID, pkt *stack.PacketBuffer) bool {
		s.syns.put(id, pkt)
		return fwd.HandlePacket(id, pkt)
	})
	return s, nil
}

// configure sets gVisor's TCP options and the NIC that accepts every
// destination and answers from it: the FAITH prefix is whatever the operator
// routes to the interface.
func (s *Stack) configure() error {
	tcpOpts := []tcpip.SettableTransportProtocolOption{
		ptr(tcpip.TCPSACKEnabled(true)),
		ptr(tcpip.TCPModerateReceiveBufferOption(true)),
		ptr(tcpip.TCPTimeWaitTimeoutOption(s.timeWait)),
		// Room for the windows autotuning asks for when a bulk flow's
		// relay goroutine or the kernel's side is descheduled for a moment
		// (measured on 2 busy cores: one stream c->s 6.1 -> 7.9 Gbit/s,
		// s->c 4.9 -> 5.2, medians of 4 interleaved runs, against 8 and 6
		// MiB). Buffers only grow for flows that move data that fast.
		&tcpip.TCPReceiveBufferSizeRangeOption{Min: 4 << 10, Default: 1 << 20, Max: 32 << 20},
		&tcpip.TCPSendBufferSizeRangeOption{Min: 4 << 10, Default: 1 << 20, Max: 16 << 20},
	}
	for _, o := range tcpOpts {
		if err := s.gs.SetTransportProtocolOption(tcp.ProtocolNumber, o); err != nil {
			return fmt.Errorf("set TCP option %T: %s", o, err)
		}
	}
	if err := s.gs.CreateNIC(nicID, s.link); err != nil {
		return fmt.Errorf("create NIC: %s", err)
	}
	if err := s.gs.SetPromiscuousMode(nicID, true); err != nil {
		return fmt.Errorf("set promiscuous mode: %s", err)
	}
	if err := s.gs.SetSpoofing(nicID, true); err != nil {
		return fmt.Errorf("set spoofing: %s", err)
	}
	return nil
}

func ptr[T any](v T) *T { return &v }

// Link returns the Stack's link endpoint, for capture control and counters.
func (s *Stack) Link() *LinkEndpoint { return s.link }

// Stats returns the Stack's flow counters.
func (s *Stack) Stats() *Stats { return &s.stats }

// ICMPErrorsSent returns how many ICMPv6 Destination Unreachable errors
// refusing flows were sent (gVisor counts one only once it is written).
func (s *Stack) ICMPErrorsSent() uint64 {
	return s.gs.Stats().ICMP.V6.PacketsSent.DstUnreachable.Value()
}

// ICMPv6SentByType returns how many ICMPv6 error messages the stack sent,
// by type, named as LinkStats.ICMPv6ByType names them.
func (s *Stack) ICMPv6SentByType() map[string]uint64 {
	sent := s.gs.Stats().ICMP.V6.PacketsSent
	return map[string]uint64{
		icmpv6Names[header.ICMPv6DstUnreachable]: sent.DstUnreachable.Value(),
		icmpv6Names[header.ICMPv6PacketTooBig]:   sent.PacketTooBig.Value(),
		icmpv6Names[header.ICMPv6TimeExceeded]:   sent.TimeExceeded.Value(),
		icmpv6Names[header.ICMPv6ParamProblem]:   sent.ParamProblem.Value(),
	}
}

// ICMPRateLimited returns how many ICMPv6 errors the rate limit suppressed.
func (s *Stack) ICMPRateLimited() uint64 {
	return s.gs.Stats().ICMP.V6.PacketsSent.RateLimited.Value()
}

// Run reads packets from the device until the device is closed or removed,
// or reading fails. ready, if not nil, is called once packets are being read.
// To stop a Stack, close its device, then call Close.
func (s *Stack) Run(ready func()) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.sweepEvery(ctx, time.Second)
	return s.link.ReadLoop(ready)
}

// sweepEvery forgets closed endpoints and stale SYNs every interval until
// ctx is done.
func (s *Stack) sweepEvery(ctx context.Context, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			s.reopen.sweep()
			s.syns.sweep(false)
		}
	}
}

// Close stops the gVisor stack: every remaining endpoint is reset. The
// device itself belongs to the caller.
func (s *Stack) Close() {
	s.link.Close()
	s.gs.Close()
	s.gs.Wait()
	s.syns.sweep(true)
	s.gs.Destroy()
}

// forward is the gVisor forwarder's callback for a new SYN.
func (s *Stack) forward(fr *tcp.ForwarderRequest) {
	s.stats.InFlight.Add(1)
	id := fr.ID()
	r := &Request{
		Client: netip.AddrPortFrom(addrOf(id.RemoteAddress), id.RemotePort),
		Dest:   netip.AddrPortFrom(addrOf(id.LocalAddress), id.LocalPort),
		fr:     fr,
		s:      s,
		syn:    s.syns.take(id),
	}
	defer func() {
		if r.fr != nil {
			r.Refuse(RefuseReset)
		}
	}()
	s.handler(r)
}

func addrOf(a tcpip.Address) netip.Addr {
	return netip.AddrFrom16(a.As16())
}

// Refusal says how a refused flow is answered.
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
	// retransmits its SYN.
	RefuseDrop
)

var rejectWith = map[Refusal]stack.RejectIPv6WithICMPType{
	RefuseProhibited:      stack.RejectIPv6WithICMPAdminProhibited,
	RefuseNoRoute:         stack.RejectIPv6WithICMPNoRoute,
	RefuseAddrUnreachable: stack.RejectIPv6WithICMPAddrUnreachable,
	RefusePortUnreachable: stack.RejectIPv6WithICMPPortUnreachable,
}

// Request is a captured flow before its handshake completes, like a
// connection waiting in an IPV6_FAITH listener. Exactly one of Accept and
// Refuse must be called.
type Request struct {
	// Client is the IPv6 client's address and port.
	Client netip.AddrPort
	// Dest is the IPv6 destination the client asked for: a FAITH address.
	Dest netip.AddrPort

	fr  *tcp.ForwarderRequest
	s   *Stack
	syn *stack.PacketBuffer // the client's SYN, for ICMPv6 errors; may be nil
}

// release drops the Request's hold on the SYN.
func (r *Request) release() {
	if r.syn != nil {
		r.syn.DecRef()
		r.syn = nil
	}
}

// Accept completes the handshake and returns the connection.
func (r *Request) Accept() (*Conn, error) {
	if r.fr == nil {
		return nil, fmt.Errorf("accept %s: request already decided", r.Client)
	}
	fr := r.fr
	r.fr = nil
	r.release()
	defer r.s.stats.InFlight.Add(-1)
	id := fr.ID() // not valid after Complete
	c := newConn(id)
	ep, err := fr.CreateEndpoint(&c.wq)
	fr.Complete(false)
	if err != nil {
		c.unregister()
		return nil, fmt.Errorf("accept %s: handshake: %s", r.Client, err)
	}
	c.setEndpoint(ep)
	if tep, ok := ep.(*tcp.Endpoint); ok {
		r.s.reopen.add(id, tep)
	}
	return c, nil
}

// Refuse refuses the flow as how says. If no SYN is held to quote in an
// ICMPv6 error, a RST is sent instead. ICMPv6 errors are rate-limited by
// gVisor (a token bucket); a suppressed one leaves the client to retransmit
// its SYN, which is decided again.
func (r *Request) Refuse(how Refusal) {
	if r.fr == nil {
		return
	}
	fr := r.fr
	r.fr = nil
	defer r.release()
	defer r.s.stats.InFlight.Add(-1)
	if how == RefuseDrop {
		fr.Complete(false)
		return
	}
	if how != RefuseReset && r.syn != nil {
		if rej, ok := r.s.gs.NetworkProtocolInstance(header.IPv6ProtocolNumber).(stack.RejectIPv6WithHandler); ok {
			// nil also when the rate limit suppressed the error: the
			// client's retransmitted SYN is then decided again.
			if err := rej.SendRejectionError(r.syn, rejectWith[how], true); err == nil {
				fr.Complete(false)
				return
			}
		}
	}
	fr.Complete(true)
}
