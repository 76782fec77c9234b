package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"time"
)

// Defaults for Config fields left zero.
const (
	// DefaultIdleTimeout is faithd's: a flow idle both ways for 30 minutes
	// is closed.
	DefaultIdleTimeout = 1800 * time.Second
	// DefaultDialTimeout is well inside a Linux client's SYN retry budget
	// (about 127 s with tcp_syn_retries=6).
	DefaultDialTimeout = 20 * time.Second
)

// Refusal says how a refused flow is answered to the IPv6 client.
type Refusal int

// The ways to refuse a flow, with what a Linux client's connect() returns.
const (
	RefuseReset           Refusal = iota // TCP RST: ECONNREFUSED
	RefuseProhibited                     // ICMPv6 unreachable code 1, administratively prohibited: EACCES
	RefuseNoRoute                        // ICMPv6 unreachable code 0, no route: ENETUNREACH
	RefuseAddrUnreachable                // ICMPv6 unreachable code 3, address unreachable: EHOSTUNREACH
	RefusePortUnreachable                // ICMPv6 unreachable code 4, port unreachable: ECONNREFUSED
	RefuseDrop                           // no answer, as a full SYN backlog: the client retransmits its SYN
)

var refusalNames = map[Refusal]string{
	RefuseReset: "rst", RefuseProhibited: "icmp6-prohibited", RefuseNoRoute: "icmp6-no-route",
	RefuseAddrUnreachable: "icmp6-addr-unreachable", RefusePortUnreachable: "icmp6-port-unreachable",
	RefuseDrop: "drop",
}

// String names the refusal as logs show it.
func (r Refusal) String() string { return refusalNames[r] }

// Request is a captured IPv6 flow waiting for the relay's decision. Exactly
// one of Accept and Refuse is called.
type Request interface {
	// Client is the IPv6 client's address and port.
	Client() netip.AddrPort
	// Dest is the FAITH address and port the client connected to.
	Dest() netip.AddrPort
	// Accept completes the client's handshake.
	Accept() (Conn, error)
	// Refuse answers the client's SYN with an error.
	Refuse(Refusal)
}

// Outcome is how the relay decided a flow, for metrics: every captured SYN
// that reaches a decision counts under exactly one.
type Outcome int

// The outcomes of a flow's set-up.
const (
	OutcomeAccepted    Outcome = iota // relayed
	OutcomeRefused                    // the IPv4 server refused (RST)
	OutcomeDenied                     // access rules, mapping or a router address
	OutcomeUnreachable                // no route, host unreachable, blackhole or prohibited on the IPv4 side
	OutcomeTimedOut                   // the IPv4 server did not answer within the dial timeout
	OutcomeLimited                    // a per-client limit or faithif's file descriptor limit
	OutcomeError                      // anything else: the client left, shutdown, a local error
	NumOutcomes
)

var outcomeNames = [NumOutcomes]string{"accepted", "refused", "denied", "unreachable", "timed_out", "limited", "error"}

// String names the outcome as metrics and logs show it.
func (o Outcome) String() string { return outcomeNames[o] }

// outcomeOf files a refusal reason under its outcome.
func outcomeOf(reason string) Outcome {
	switch reason {
	case "connection-refused":
		return OutcomeRefused
	case "denied":
		return OutcomeDenied
	case "host-unreachable", "network-unreachable", "blackhole", "prohibited":
		return OutcomeUnreachable
	case "timeout":
		return OutcomeTimedOut
	case "limit", reasonFDLimit:
		return OutcomeLimited
	}
	return OutcomeError
}

// Ends lists the ways a relayed flow ends, in the order Stats.Ended counts
// them.
var Ends = [...]End{EndClosed, EndClientReset, EndServerReset, EndIdleTimeout, EndShutdown}

func endIndex(e End) int {
	for k, x := range Ends {
		if x == e {
			return k
		}
	}
	return len(Ends) - 1
}

// Stats counts the relay's flows and bytes. All fields are safe for
// concurrent use.
type Stats struct {
	// Outcomes counts decided flows by Outcome; Ended counts finished
	// relayed flows by how they ended, indexed as Ends.
	Outcomes [NumOutcomes]atomic.Uint64
	Ended    [len(Ends)]atomic.Uint64

	FlowsOpen    atomic.Int64
	FlowsFDLimit atomic.Uint64 // refused because faithif ran out of file descriptors (within OutcomeLimited)
	BytesIn      atomic.Uint64 // client to server
	BytesOut     atomic.Uint64 // server to client
}

// Total returns how many captured flows reached a decision.
func (s *Stats) Total() uint64 {
	var n uint64
	for o := range NumOutcomes {
		n += s.Outcomes[o].Load()
	}
	return n
}

// Accepted returns how many flows were relayed.
func (s *Stats) Accepted() uint64 { return s.Outcomes[OutcomeAccepted].Load() }

// Denied returns how many flows the rules or the mapping did not allow.
func (s *Stats) Denied() uint64 { return s.Outcomes[OutcomeDenied].Load() }

// Limited returns how many flows a per-client limit refused.
func (s *Stats) Limited() uint64 {
	return s.Outcomes[OutcomeLimited].Load() - s.FlowsFDLimit.Load()
}

// Refused returns how many flows were refused for want of an IPv4
// connection: the dial failed, or faithif was out of descriptors.
func (s *Stats) Refused() uint64 {
	return s.Outcomes[OutcomeRefused].Load() + s.Outcomes[OutcomeUnreachable].Load() +
		s.Outcomes[OutcomeTimedOut].Load() + s.Outcomes[OutcomeError].Load() + s.FlowsFDLimit.Load()
}

// Config configures a Relay.
type Config struct {
	Mapper *Mapper
	Rules  *Rules // nil: permit what the Mapper allows
	// IsLocal reports whether an IPv4 address is one of the router's own;
	// such destinations are always refused. Nil: none is.
	IsLocal     func(netip.Addr) bool
	DenyWith    Refusal       // how denied flows are refused; the zero value is RST, faithif uses RefuseProhibited
	Limits      Limits        // per client /64; zero fields: the defaults
	DialTimeout time.Duration // zero: DefaultDialTimeout
	IdleTimeout time.Duration // zero: DefaultIdleTimeout; negative: never
	Logger      *slog.Logger  // nil: slog.Default()
	// ObserveDial, if set, is given the duration of every IPv4 connection
	// attempt and whether it succeeded (for a latency histogram).
	ObserveDial func(d time.Duration, ok bool)
}

// Relay decides captured flows and carries the accepted ones to IPv4.
type Relay struct {
	cfg    Config
	dialer net.Dialer
	rules  atomic.Pointer[Rules]
	limits clientLimiter
	stats  Stats

	fdLimitVal atomic.Uint64 // FDLimit, as last read
	fdLimitAt  atomic.Int64  // when, in Unix nanoseconds
}

// New returns a Relay.
func New(cfg Config) *Relay {
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Limits.MaxFlows <= 0 {
		cfg.Limits.MaxFlows = DefaultMaxFlowsPerClient
	}
	if cfg.Limits.MaxHandshakes <= 0 {
		cfg.Limits.MaxHandshakes = DefaultMaxHandshakesPerClient
	}
	r := &Relay{cfg: cfg, dialer: net.Dialer{Timeout: cfg.DialTimeout}}
	r.limits.limits = cfg.Limits
	r.rules.Store(cfg.Rules)
	return r
}

// SetRules replaces the access rules atomically: flows already open keep
// running, new flows are checked against rs.
func (r *Relay) SetRules(rs *Rules) { r.rules.Store(rs) }

// Rules returns the access rules in force.
func (r *Relay) Rules() *Rules { return r.rules.Load() }

// Stats returns the relay's counters.
func (r *Relay) Stats() *Stats { return &r.stats }

// Limits returns the per-client limits in force.
func (r *Relay) Limits() Limits { return r.cfg.Limits }

// Clients returns how many client /64s have flows open or being set up.
func (r *Relay) Clients() int { return r.limits.clients() }

// Handle decides one flow and, if it is accepted, starts relaying it until
// it ends or ctx is cancelled; done, if not nil, is called once the flow is
// over (at once for a refused flow). The IPv4 connection is made before the
// client's handshake completes, so a client never sees a connection that
// then closes: it sees the IPv4 side's answer.
func (r *Relay) Handle(ctx context.Context, req Request, done func()) {
	relaying := false
	defer func() {
		if !relaying && done != nil {
			done()
		}
	}()
	start := time.Now()
	client, dst6 := req.Client(), req.Dest()
	log := r.cfg.Logger.With("client", client.String(), "dst6", dst6.String())

	who := clientOf(client.Addr())
	if ok, limit := r.limits.admit(who); !ok {
		// Too many handshakes: drop the SYN, the client retries in a
		// second, as with a full listen backlog. Too many flows: say no.
		answer := RefuseReset
		if limit == limitHandshakes {
			answer = RefuseDrop
		}
		r.refuse(req, log, answer, "limit", "limit", limit, "client_net", who.String())
		return
	}
	established := false
	defer func() {
		if !relaying {
			r.limits.done(who, established)
		}
	}()

	dst4, err := r.cfg.Mapper.Map(dst6.Addr())
	if err != nil {
		r.refuse(req, log, r.cfg.DenyWith, "denied", "error", err.Error())
		return
	}
	to := netip.AddrPortFrom(dst4, dst6.Port())
	log = log.With("dst4", to.String())
	if r.cfg.IsLocal != nil && r.cfg.IsLocal(dst4) {
		r.refuse(req, log, r.cfg.DenyWith, "denied", "error", "destination is an address of this router")
		return
	}
	rules := r.rules.Load()
	d := rules.Check(client.Addr(), to)
	if !d.Permit {
		rule := "no rule matched"
		if d.Rule != nil {
			rule = fmt.Sprintf("%s:%d", rules.File, d.Rule.Line)
		}
		r.refuse(req, log, r.cfg.DenyWith, "denied", "rule", rule)
		return
	}
	if lim := r.fdLimit(); lim > 0 && uint64(r.stats.FlowsOpen.Load())+fdReserve >= lim {
		// Keep descriptors for the control socket and netlink: refuse
		// before the kernel does.
		r.refuse(req, log, RefuseReset, reasonFDLimit, "fd_limit", lim, "flows_open", r.stats.FlowsOpen.Load())
		return
	}
	dialer := &r.dialer
	if d.Rule != nil && d.Rule.Bind.IsValid() {
		bound := r.dialer
		bound.LocalAddr = &net.TCPAddr{IP: d.Rule.Bind.AsSlice()}
		dialer = &bound
	}

	dialStart := time.Now()
	nc, err := dialer.DialContext(ctx, "tcp4", to.String())
	dialTime := time.Since(dialStart)
	if r.cfg.ObserveDial != nil {
		r.cfg.ObserveDial(dialTime, err == nil)
	}
	if err != nil {
		reason, answer := dialFailure(err)
		r.refuse(req, log, answer, reason, "error", err.Error(), "dial_seconds", dialTime.Seconds())
		return
	}
	server, err := NewKernelConn(nc.(*net.TCPConn))
	if err != nil {
		nc.Close()
		r.refuse(req, log, RefuseReset, "error", "error", err.Error())
		return
	}
	c, err := req.Accept()
	if err != nil {
		server.Abort()
		r.stats.Outcomes[OutcomeError].Add(1)
		log.Info("flow refused", "reason", "client-gone", "outcome", OutcomeError.String(), "error", err.Error())
		return
	}
	r.limits.established(who)
	established = true
	r.stats.Outcomes[OutcomeAccepted].Add(1)
	r.stats.FlowsOpen.Add(1)
	log.Info("flow accepted", "outcome", OutcomeAccepted.String(), "src4", nc.LocalAddr().String(), "dial_seconds", dialTime.Seconds())

	relaying = true
	StartPipe(ctx, c, server, r.cfg.IdleTimeout, PipeStats{ClientToServer: &r.stats.BytesIn, ServerToClient: &r.stats.BytesOut}, func(res PipeResult) {
		r.limits.done(who, true)
		r.stats.FlowsOpen.Add(-1)
		r.stats.Ended[endIndex(res.End)].Add(1)
		// The fields of the metrics, so that logs and metrics add up.
		attrs := []any{"outcome", OutcomeAccepted.String(), "end", string(res.End),
			"bytes_client_to_server", res.ClientToServer, "bytes_server_to_client", res.ServerToClient,
			"dial_seconds", dialTime.Seconds(), "duration_seconds", time.Since(start).Seconds()}
		if res.Err != nil {
			attrs = append(attrs, "error", res.Err.Error())
		}
		log.Info("flow finished", attrs...)
		if done != nil {
			done()
		}
	})
}

// reasonFDLimit is the refusal reason when faithif is out of descriptors.
const reasonFDLimit = "fd-limit"

// refuse answers req with how, counts the flow under the reason's outcome
// and logs one line with the reason and attrs. Running out of descriptors is
// logged as an error that says what to do, and counted in FlowsFDLimit as
// well.
func (r *Relay) refuse(req Request, log *slog.Logger, how Refusal, reason string, attrs ...any) {
	outcome := outcomeOf(reason)
	r.stats.Outcomes[outcome].Add(1)
	req.Refuse(how)
	attrs = append([]any{"reason", reason, "outcome", outcome.String(), "answer", how.String()}, attrs...)
	switch reason {
	case reasonFDLimit:
		r.stats.FlowsFDLimit.Add(1)
		log.Error("flow refused: out of file descriptors; raise the hard RLIMIT_NOFILE (LimitNOFILE= in systemd, ulimit -Hn) or lower --max-flows-per-client", attrs...)
	case "limit":
		log.Warn("flow refused", attrs...)
	default:
		log.Info("flow refused", attrs...)
	}
}

// fdReserve is how many file descriptors the relay leaves for everything
// that is not a flow: the TUN, netlink, the control socket, logs.
const fdReserve = 32

// fdLimitEvery is how often the relay rereads the open-files limit, so that
// a limit changed at run time (prlimit) is honoured without a getrlimit
// call per flow.
const fdLimitEvery = time.Second

// fdLimit returns FDLimit, reread at most every fdLimitEvery.
func (r *Relay) fdLimit() uint64 {
	now := time.Now().UnixNano()
	if now-r.fdLimitAt.Load() < int64(fdLimitEvery) {
		return r.fdLimitVal.Load()
	}
	v := FDLimit()
	r.fdLimitVal.Store(v)
	r.fdLimitAt.Store(now)
	return v
}

// FDLimit returns the open-files limit in force (0 if unknown); one relayed
// flow needs one. Go raises the soft limit to the hard one when the process
// starts.
func FDLimit() uint64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	return rl.Cur
}

// dialFailure names why an IPv4 dial failed, for logs, and chooses the
// answer whose errno at the client tells the same thing.
func dialFailure(err error) (string, Refusal) {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection-refused", RefuseReset
	case errors.Is(err, syscall.EHOSTUNREACH):
		return "host-unreachable", RefuseAddrUnreachable
	case errors.Is(err, syscall.ENETUNREACH):
		return "network-unreachable", RefuseNoRoute
	case errors.Is(err, syscall.EINVAL):
		// What connect(2) says for a destination behind a blackhole route.
		return "blackhole", RefuseAddrUnreachable
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return "prohibited", RefuseProhibited
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return reasonFDLimit, RefuseReset
	case errors.Is(err, context.Canceled):
		return "shutdown", RefuseReset
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout", RefuseAddrUnreachable
	default:
		// Anything else (EADDRNOTAVAIL, ENOBUFS, ...) is faithif's own
		// trouble, not the destination's: a RST says "not now".
		return "error", RefuseReset
	}
}
