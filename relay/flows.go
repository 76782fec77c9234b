package relay

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// FlowState is where a flow the relay knows of stands.
type FlowState int

// The states of a flow, as `faithif flows` shows them.
const (
	// FlowHandshake: permitted, and being set up: its IPv4 connection is
	// being dialled, or its client's handshake is being completed.
	FlowHandshake FlowState = iota
	// FlowEstablished: relayed, both directions open.
	FlowEstablished
	// FlowHalfClosedByClient: the client sent its FIN (passed on to the
	// server); the server still sends.
	FlowHalfClosedByClient
	// FlowHalfClosedByServer: the server sent its FIN (passed on to the
	// client); the client still sends.
	FlowHalfClosedByServer
	// FlowClosing: both sides sent their FIN; the flow is ending.
	FlowClosing
	// FlowDraining: relayed while the relay drains (faithif destroy,
	// SIGTERM): the flow has the grace period to finish, then is reset.
	FlowDraining
	numFlowStates
)

var flowStateNames = [numFlowStates]string{
	FlowHandshake:          "handshake",
	FlowEstablished:        "established",
	FlowHalfClosedByClient: "half_closed_by_client",
	FlowHalfClosedByServer: "half_closed_by_server",
	FlowClosing:            "closing",
	FlowDraining:           "draining",
}

// String names the state as `faithif flows` shows it.
func (s FlowState) String() string {
	if s < 0 || s >= numFlowStates {
		return "unknown"
	}
	return flowStateNames[s]
}

// FlowStates returns every state's name, in order.
func FlowStates() []string { return append([]string(nil), flowStateNames[:]...) }

// FlowInfo is a snapshot of one flow the relay is setting up or relaying.
type FlowInfo struct {
	Client netip.AddrPort // the IPv6 client
	Dst6   netip.AddrPort // the FAITH address it connected to
	Src4   netip.AddrPort // the IPv4 connection's own end; zero until it is relayed
	Dst4   netip.AddrPort // the IPv4 server
	State  FlowState
	// Age is the time since the relay took up the flow's SYN; Idle the
	// time since data last moved either way (since the flow was relayed,
	// if none has; the age while it is being set up).
	Age, Idle time.Duration
	// Payload bytes relayed each way.
	BytesClientToServer, BytesServerToClient uint64
}

// Flows returns a snapshot of the flows the relay is setting up (from the
// moment they are permitted: dialling, or waiting for the client's
// handshake) or relaying, in no particular order.
//
// Nothing is kept for it on the packet path: a flow is listed and unlisted
// once each, and its bytes, last activity and half-closes are the atomics
// its copy loop keeps anyway, read here.
func (r *Relay) Flows() []FlowInfo {
	fs := r.live.list()
	draining := r.Draining()
	now := time.Now()
	out := make([]FlowInfo, 0, len(fs))
	for _, f := range fs {
		fi := FlowInfo{Client: f.tuple.client, Dst6: f.tuple.dest, Dst4: f.to, State: FlowHandshake, Age: max(now.Sub(f.start), 0)}
		fi.Idle = fi.Age
		if p := f.meter.Load(); p != nil {
			var fins uint32
			fi.Src4 = f.src4 // written before the meter was published
			fi.BytesClientToServer, fi.BytesServerToClient, fi.Idle, fins = p.progress(now)
			switch {
			case draining:
				fi.State = FlowDraining
			case fins == finClient|finServer:
				fi.State = FlowClosing
			case fins == finClient:
				fi.State = FlowHalfClosedByClient
			case fins == finServer:
				fi.State = FlowHalfClosedByServer
			default:
				fi.State = FlowEstablished
			}
		}
		out = append(out, fi)
	}
	return out
}

// liveFlows lists the flows being set up or relayed, for Flows: a list
// threaded through their flowSetups, so that listing and unlisting a flow
// allocates nothing and costs one short critical section each.
type liveFlows struct {
	mu   sync.Mutex
	head *flowSetup
	n    int
}

// liveLinks are a flowSetup's place in liveFlows, guarded by its mu.
type liveLinks struct {
	prev, next *flowSetup
	listed     bool
}

// flowProgress is what a flowSetup publishes once it is relayed.
type flowProgress struct {
	src4  netip.AddrPort        // the IPv4 connection's own end; written before meter
	meter atomic.Pointer[meter] // nil until the flow is relayed
}

// add lists f.
func (l *liveFlows) add(f *flowSetup) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if f.listed {
		return
	}
	f.prev, f.next, f.listed = nil, l.head, true
	if l.head != nil {
		l.head.prev = f
	}
	l.head = f
	l.n++
}

// remove unlists f, if it is listed.
func (l *liveFlows) remove(f *flowSetup) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !f.listed {
		return
	}
	if f.prev != nil {
		f.prev.next = f.next
	} else {
		l.head = f.next
	}
	if f.next != nil {
		f.next.prev = f.prev
	}
	f.prev, f.next, f.listed = nil, nil, false
	l.n--
}

// list returns the flows listed now. The fields of a flowSetup it reads
// afterwards are those set before add (and the atomics of flowProgress).
func (l *liveFlows) list() []*flowSetup {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]*flowSetup, 0, l.n)
	for f := l.head; f != nil; f = f.next {
		out = append(out, f)
	}
	return out
}
