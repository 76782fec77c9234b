package relay

import "sync/atomic"

// Outcome is how the relay decided a flow: every captured SYN that reaches a
// decision counts under exactly one.
type Outcome int

// The outcomes of a flow's set-up.
const (
	OutcomeAccepted    Outcome = iota // relayed
	OutcomeRefused                    // the IPv4 server refused (RST)
	OutcomeDenied                     // access rules, mapping or a router address
	OutcomeUnreachable                // no route, host unreachable, blackhole or prohibited on the IPv4 side
	OutcomeTimedOut                   // the IPv4 server did not answer within the dial timeout
	OutcomeLimited                    // a per-client limit or faithif's file descriptor limit
	OutcomeError                      // anything else: the client left (or never completed its handshake), shutdown, a local error
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"accepted", "refused", "denied", "unreachable", "timed_out", "limited", "error"}

// String names the outcome as metrics and logs show it.
func (o Outcome) String() string { return outcomeNames[o] }

// outcomeOf files a refusal reason under its outcome.
func outcomeOf(reason string) Outcome {
	switch reason {
	case "connection-refused", reasonNoReservedPort: // the server's RST, before or during the connect; no reserved port free
		return OutcomeRefused
	case "denied":
		return OutcomeDenied
	case "host-unreachable", "network-unreachable", "blackhole", "prohibited":
		return OutcomeUnreachable
	case "timeout":
		return OutcomeTimedOut
	case "limit", reasonFDLimit, reasonDials:
		return OutcomeLimited
	}
	return OutcomeError
}

// ends lists the ways a relayed flow ends, in the order stats.ended counts
// them.
var ends = [...]End{EndClosed, EndClientReset, EndServerReset, EndIdleTimeout, EndShutdown}

func endIndex(e End) int {
	for k, x := range ends {
		if x == e {
			return k
		}
	}
	return len(ends) - 1
}

// stats is the relay's live counters, updated as flows are decided, copied
// and finished.
type stats struct {
	outcomes [numOutcomes]atomic.Uint64 // decided flows by Outcome
	ended    [len(ends)]atomic.Uint64   // finished relayed flows, indexed as ends
	open     atomic.Int64               // relayed flows open now
	fdLimit  atomic.Uint64              // refused for want of a descriptor (within OutcomeLimited)
	repeated atomic.Uint64              // SYNs answered from recentRefusals (in no outcome)
	// dialsLimited counts flows refused because Limits.MaxHandshakesTotal
	// IPv4 connections were being set up (within OutcomeLimited).
	dialsLimited atomic.Uint64
	bytesIn      atomic.Uint64 // client to server
	bytesOut     atomic.Uint64 // server to client
	// handshakeFirst counts flows whose client's handshake was completed
	// before their dial, under pressure (within the outcomes).
	handshakeFirst atomic.Uint64
}

// Counters is a snapshot of a Relay's counters.
//
// The struct tags describe each counter once for every reader (see package
// faithif/status): json is its key in `faithif show --json`, text its group
// and item in the text `show`, metric its Prometheus type, name (after
// faithif_) and label, help its help text.
type Counters struct {
	FlowsOpen int64 `json:"flows_open" text:"flows,open" metric:"gauge flows_open" help:"Relayed flows open now."`
	// FlowsTotal counts the captured flows that reached a decision; the
	// next four split it (refused: no IPv4 connection, or no descriptor).
	FlowsTotal    uint64 `json:"flows_decided" text:"flows,total"`
	FlowsAccepted uint64 `json:"flows_accepted" text:"flows,accepted"`
	FlowsRefused  uint64 `json:"flows_refused" text:"flows,refused"`
	FlowsDenied   uint64 `json:"flows_denied" text:"flows,denied"`
	FlowsLimited  uint64 `json:"flows_limited" text:"flows,limited"`
	// FlowOutcomes counts decided flows by Outcome name; FlowEnds counts
	// finished relayed flows by End.
	FlowOutcomes map[string]uint64 `json:"flows_total" text:"outcomes" metric:"counter flows_total outcome" help:"Captured flows by the relay's decision: accepted, refused (the IPv4 server reset, or no reserved source port was free), denied, unreachable, timed_out, limited, error."`
	FlowEnds     map[string]uint64 `json:"flows_ended_total" text:"ended" metric:"counter flows_ended_total end" help:"Relayed flows finished, by how they ended."`
	// Clients is how many client /64s have flows open or being set up.
	Clients int `json:"clients" text:"clients,open" metric:"gauge clients" help:"Client /64s with flows open or being set up."`
	// BytesIn and BytesOut count relayed payload, client to server and
	// server to client.
	BytesIn  uint64 `json:"bytes_client_to_server_total" text:"bytes,client->server" metric:"counter bytes_total direction=client_to_server" help:"Payload bytes relayed, by direction."`
	BytesOut uint64 `json:"bytes_server_to_client_total" text:"bytes,server->client" metric:"counter bytes_total direction=server_to_client" help:"Payload bytes relayed, by direction."`
	// FDLimit is the open-files limit in force; FlowsFDLimit counts the
	// flows refused for want of a descriptor.
	FDLimit      uint64 `json:"fd_limit" text:"fd limit" metric:"gauge fd_limit" help:"The process's open-files limit; each relayed flow holds one descriptor."`
	FlowsFDLimit uint64 `json:"flows_fd_limit_total" text:"fd limit,flows refused for lack of fds" metric:"counter flows_fd_limit_total" help:"Flows refused because the process was short of file descriptors."`
	// FlowsHandshakeFirst counts the flows (within FlowsTotal) whose
	// client's handshake was completed before their IPv4 dial, because a
	// quarter of the handshake table was half-open: under pressure.
	FlowsHandshakeFirst uint64 `json:"flows_handshake_first_total" text:"flows,handshake first" metric:"counter flows_handshake_first_total" help:"Flows whose client's handshake was completed before their IPv4 dial, because a quarter of max_handshakes were half-open (pressure, e.g. a SYN flood); a failed dial then resets the client."`
	// RefusalsRepeated counts the SYNs of a 4-tuple whose dial failed in
	// the last 5 s, answered the same way without a second dial; they are
	// not new flows, so not in FlowsTotal.
	RefusalsRepeated uint64 `json:"refusals_repeated_total" text:"flows,refusals repeated" metric:"counter refusals_repeated_total" help:"SYNs of a 4-tuple whose IPv4 dial failed in the last 5 s, answered as before without a second dial (not counted in flows_total)."`
	// DialsInProgress is how many IPv4 connections are being set up, in
	// either order (dialling, or dialled first and waiting for the
	// client); FlowsDialsLimited counts the flows (within FlowsLimited)
	// refused because max_handshakes of them were.
	DialsInProgress   int64  `json:"dials_in_progress" text:"flows,dialling" metric:"gauge dials_in_progress" help:"IPv4 connections being set up (dialling, or dialled and waiting for the client's handshake); at most max_handshakes."`
	FlowsDialsLimited uint64 `json:"flows_dials_limited_total" text:"flows,dials limited" metric:"counter flows_dials_limited_total" help:"Flows refused because max_handshakes IPv4 connections were being set up (a SYN dropped, or after the handshake a RST); within flows_total{outcome=limited}."`
}

// Counters returns a snapshot of the relay's counters.
func (r *Relay) Counters() Counters {
	s := &r.stats
	c := Counters{
		FlowsOpen:    s.open.Load(),
		FlowOutcomes: make(map[string]uint64, numOutcomes),
		FlowEnds:     make(map[string]uint64, len(ends)),
		Clients:      r.limits.clients(),
		BytesIn:      s.bytesIn.Load(),
		BytesOut:     s.bytesOut.Load(),
		FDLimit:      FDLimit(),
		// Read before the outcomes, which count the same refusals
		// first: FlowsLimited cannot go below zero.
		FlowsFDLimit:        s.fdLimit.Load(),
		FlowsHandshakeFirst: s.handshakeFirst.Load(),
		RefusalsRepeated:    s.repeated.Load(),
		DialsInProgress:     r.dialing.Load(),
		FlowsDialsLimited:   s.dialsLimited.Load(),
	}
	var n [numOutcomes]uint64
	for o := range numOutcomes {
		n[o] = s.outcomes[o].Load()
		c.FlowOutcomes[o.String()] = n[o]
		c.FlowsTotal += n[o]
	}
	for k, e := range ends {
		c.FlowEnds[string(e)] = s.ended[k].Load()
	}
	c.FlowsAccepted = n[OutcomeAccepted]
	c.FlowsDenied = n[OutcomeDenied]
	c.FlowsLimited = n[OutcomeLimited] - c.FlowsFDLimit
	c.FlowsRefused = n[OutcomeRefused] + n[OutcomeUnreachable] + n[OutcomeTimedOut] + n[OutcomeError] + c.FlowsFDLimit
	return c
}
