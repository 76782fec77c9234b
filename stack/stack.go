package stack

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/faithif/faithif/relay/flow"
	"github.com/faithif/faithif/stack/workers"
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
	// MaxInFlight bounds the flows waiting for a decision or in their
	// handshake; SYNs beyond it are dropped (counted in
	// Counters.HandshakesDropped) and the client retries. Near it, the
	// oldest half-open handshake is evicted for a new SYN (pressure.go).
	// It also sizes the flow table's cap on held SYNs (twice it).
	MaxInFlight int
	// DialFirst is the flows in flight at which the Stack comes under
	// pressure and challenges SYNs from unvalidated addresses
	// (pressure.go). It is the relay's bound on flows that dial first
	// (relay.Limits.DialFirst), so that both change together: pass that.
	// Zero: DefaultDialFirst(MaxInFlight), the relay's own rule.
	DialFirst int
	// TimeWaitTimeout is how long a flow closed first by the relay stays in
	// TIME_WAIT. A new SYN for the same 4-tuple reopens it at once.
	TimeWaitTimeout time.Duration
}

// DefaultDialFirst is Options.DialFirst when it is zero: a quarter of
// maxInFlight (at least 1), as relay.Limits.DialFirst computes it.
func DefaultDialFirst(maxInFlight int) int { return max(1, maxInFlight/4) }

// Stack is a gVisor netstack bound to one TUN device that captures every
// IPv6 TCP flow reaching it, whatever its destination, as an IPV6_FAITH
// listener does on BSD.
type Stack struct {
	gs      *stack.Stack
	link    *LinkEndpoint
	handler flow.Handler
	flows   flowTable
	// timeWait is how long a closed flow's endpoint stays in TIME_WAIT.
	timeWait time.Duration
	// inFlight counts the handshakes waiting for a decision or in their
	// handshake; maxInFlight is the forwarder's cap on them, evictAt
	// where eviction starts and dialFirst where pressure does
	// (pressure.go).
	inFlight    atomic.Int64
	maxInFlight int
	evictAt     int64
	dialFirst   int64
	halfOpen    halfOpen
	press       pressure
	// listeners are the claims of Listen (listen.go).
	listeners listeners
	// workers runs the handler (decide) on goroutines whose stacks have
	// grown; the flow's copy loops start on new goroutines, which stay
	// shallow while the flow idles.
	workers workers.Pool
}

// New returns a Stack reading from and writing to dev that hands each
// captured flow to handler; a flow the handler returns from without deciding
// is refused with a RST. Capturing starts off; see LinkEndpoint.SetCapture.
func New(dev tun.Device, handler flow.Handler, opts Options) (*Stack, error) {
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
	s := &Stack{gs: gs, handler: handler, link: newLinkEndpoint(dev, opts.MTU), timeWait: opts.TimeWaitTimeout}
	if opts.DialFirst <= 0 {
		opts.DialFirst = DefaultDialFirst(opts.MaxInFlight)
	}
	s.maxInFlight = opts.MaxInFlight
	s.evictAt = int64(opts.MaxInFlight - evictHeadroom(opts.MaxInFlight))
	s.dialFirst = int64(opts.DialFirst)
	s.flows.inject = s.link.inject
	s.flows.maxHeld = 2 * opts.MaxInFlight
	s.link.synHook = s.syn
	s.link.noFlow = func(id stack.TransportEndpointID) bool { return !s.flows.known(id) && !s.hasEndpoint(id) }

	if err := s.configure(); err != nil {
		gs.Destroy()
		return nil, err
	}
	gs.SetRouteTable([]tcpip.Route{{Destination: header.IPv6EmptySubnet, NIC: nicID}})

	fwd := tcp.NewForwarder(gs, 0, opts.MaxInFlight, s.forward)
	gs.SetTransportProtocolHandler(tcp.ProtocolNumber, fwd.HandlePacket)
	return s, nil
}

// configure sets gVisor's TCP options and the NIC that accepts every
// destination and answers from it: the FAITH prefix is whatever the operator
// routes to the interface.
func (s *Stack) configure() error {
	tcpOpts := []tcpip.SettableTransportProtocolOption{
		ptr(tcpip.TCPSACKEnabled(true)),
		ptr(tcpip.TCPModerateReceiveBufferOption(true)),
		// CUBIC (with HyStart) and no RACK-TLP loss detection: gVisor's
		// tail loss probe fires at twice the smoothed RTT with no floor
		// (Linux keeps 10 ms), which on a LAN client's sub-millisecond
		// path is shorter than the ACK delays of two busy cores; each
		// spurious probe halved the congestion window, so that with
		// both directions at once server->client got 0.4 Gbit/s of 6.
		// RACK off with Reno stalled a download through a 100 Mbit/s
		// bottleneck for 2 s after slow start overshot; CUBIC's HyStart
		// leaves slow start before that. Measured on 2 cores (iperf3,
		// 5 s): --bidir 6.2/0.4 -> 5.0/3.0 Gbit/s, four streams 4.7 ->
		// 7.6, one stream unchanged; through a 100 Mbit/s tbf 94 Mbit/s
		// from the first second either way.
		ptr(tcpip.CongestionControlOption("cubic")),
		ptr(tcpip.TCPRecovery(0)),
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
	if err := s.gs.CreateNICWithOptions(nicID, s.link, stack.NICOptions{QDisc: linkQDisc{s.link}}); err != nil {
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

// ptr returns a pointer to a copy of v.
func ptr[T any](v T) *T { return &v }

// Link returns the Stack's link endpoint, for capture control.
func (s *Stack) Link() *LinkEndpoint { return s.link }

// Run reads packets from the device until the device is closed or removed,
// or reading fails. ready, if not nil, is called once packets are being read.
// To stop a Stack, close its device, then call Close.
func (s *Stack) Run(ready func()) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.sweepEvery(ctx, time.Second)
	return s.link.readLoop(ready)
}

// sweepEvery sweeps the flow table (closed endpoints, stale SYNs), the send
// windows (flows without an endpoint), the pressure, the half-open
// handshakes past their budget and the expired validated addresses every
// interval until ctx is done.
func (s *Stack) sweepEvery(ctx context.Context, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			s.flows.sweep(false)
			s.link.wins.sweep(s.hasEndpoint)
			s.pressureTick(now)
			s.expire(now)
			s.link.chal.valid.sweep(now.Sub(s.link.chal.key.epoch))
		}
	}
}

// hasEndpoint reports whether gVisor has an endpoint for id.
func (s *Stack) hasEndpoint(id stack.TransportEndpointID) bool {
	return s.gs.FindTransportEndpoint(header.IPv6ProtocolNumber, tcp.ProtocolNumber, id, nicID) != nil
}

// Close stops the gVisor stack: every remaining endpoint is reset. The
// device itself belongs to the caller.
func (s *Stack) Close() {
	s.closeListeners()
	s.link.Close()
	s.gs.Close()
	s.closeHalfOpen()
	s.gs.Wait()
	s.flows.sweep(true)
	s.gs.Destroy()
	s.workers.Close()
}
