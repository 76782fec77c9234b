package relay

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/faithif/faithif/relay/flow"
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

// Config configures a Relay.
type Config struct {
	Mapper *Mapper
	Rules  *Rules // nil: permit what the Mapper allows
	// IsLocal reports whether an IPv4 address is one of the router's own;
	// such destinations are always refused. Nil: none is.
	IsLocal     func(netip.Addr) bool
	DenyWith    flow.Refusal  // how denied flows are refused; the zero value is RST, faithif uses RefuseProhibited
	Limits      Limits        // per client /64; zero fields: the defaults
	DialTimeout time.Duration // zero: DefaultDialTimeout
	IdleTimeout time.Duration // zero: DefaultIdleTimeout; negative: never
	Logger      *slog.Logger  // nil: slog.Default()
	// ObserveDial, if set, is given the duration of every IPv4 connection
	// attempt and whether it succeeded (for a latency histogram).
	ObserveDial func(d time.Duration, ok bool)
}

// Relay decides captured flows and carries the accepted ones to IPv4. Its
// Handle method is the stack's flow.Handler.
type Relay struct {
	cfg    Config
	dialer net.Dialer
	rules  atomic.Pointer[Rules]
	limits clientLimiter
	stats  stats

	flows  tracker            // flows being decided or relayed
	ctx    context.Context    // the flows' context, cancelled by Close
	cancel context.CancelFunc // cancels ctx

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
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.limits.limits = cfg.Limits
	r.rules.Store(cfg.Rules)
	return r
}

// SetRules replaces the access rules atomically: flows already open keep
// running, new flows are checked against rs.
func (r *Relay) SetRules(rs *Rules) { r.rules.Store(rs) }

// Rules returns the access rules in force.
func (r *Relay) Rules() *Rules { return r.rules.Load() }

// Limits returns the per-client limits in force.
func (r *Relay) Limits() Limits { return r.cfg.Limits }

// Handle decides one captured flow and, if it is accepted, relays it until
// it ends or the relay is closed; it is the stack's flow.Handler. The IPv4
// connection is made before the client's handshake completes, so a client
// never sees a connection that then closes: it sees the IPv4 side's answer.
// Once Shutdown or Close has begun, new flows are refused with a RST.
func (r *Relay) Handle(req flow.Request) {
	if !r.flows.begin() {
		req.Refuse(flow.RefuseReset) // draining: no new flows
		return
	}
	relaying := false
	defer func() {
		if !relaying {
			r.flows.end()
		}
	}()
	relaying = r.handle(req)
}

// handle decides req and starts relaying it; it reports whether it did, in
// which case the pipe's end calls r.flows.end.
func (r *Relay) handle(req flow.Request) bool {
	start := time.Now()
	client, dst6 := req.Client(), req.Dest()
	log := r.cfg.Logger.With("client", client.String(), "dst6", dst6.String())

	who := clientOf(client.Addr())
	if ok, limit := r.limits.admit(who); !ok {
		// Too many handshakes: drop the SYN, the client retries in a
		// second, as with a full listen backlog. Too many flows: say no.
		answer := flow.RefuseReset
		if limit == limitHandshakes {
			answer = flow.RefuseDrop
		}
		r.refuse(req, log, answer, "limit", "limit", limit, "client_net", who.String())
		return false
	}
	established := false
	defer func() {
		if !established {
			r.limits.done(who, false)
		}
	}()

	rules := r.rules.Load()
	v := Policy{Mapper: r.cfg.Mapper, Rules: rules, IsLocal: r.cfg.IsLocal}.Check(client.Addr(), dst6)
	if v.To.IsValid() {
		log = log.With("dst4", v.To.String())
	}
	if v.Refused != nil {
		r.refuse(req, log, r.cfg.DenyWith, "denied", "error", v.Refused.Error())
		return false
	}
	if !v.Permit {
		rule := "no rule matched"
		if v.Rule != nil {
			rule = fmt.Sprintf("%s:%d", rules.File, v.Rule.Line)
		}
		r.refuse(req, log, r.cfg.DenyWith, "denied", "rule", rule)
		return false
	}
	if lim := r.fdLimit(); lim > 0 && uint64(r.stats.open.Load())+fdReserve >= lim {
		// Keep descriptors for the control socket and netlink: refuse
		// before the kernel does.
		r.refuse(req, log, flow.RefuseReset, reasonFDLimit, "fd_limit", lim, "flows_open", r.stats.open.Load())
		return false
	}
	dialer := &r.dialer
	if v.Rule != nil && v.Rule.Bind.IsValid() {
		bound := r.dialer
		bound.LocalAddr = &net.TCPAddr{IP: v.Rule.Bind.AsSlice()}
		dialer = &bound
	}

	dialStart := time.Now()
	nc, err := dialer.DialContext(r.ctx, "tcp4", v.To.String())
	dialTime := time.Since(dialStart)
	if r.cfg.ObserveDial != nil {
		r.cfg.ObserveDial(dialTime, err == nil)
	}
	if err != nil {
		reason, answer := dialFailure(err)
		r.refuse(req, log, answer, reason, "error", err.Error(), "dial_seconds", dialTime.Seconds())
		return false
	}
	server, err := newKernelConn(nc.(*net.TCPConn))
	if err != nil {
		nc.Close()
		r.refuse(req, log, flow.RefuseReset, "error", "error", err.Error())
		return false
	}
	c, err := req.Accept()
	if err != nil {
		server.Abort()
		r.stats.outcomes[OutcomeError].Add(1)
		log.Info("flow refused", "reason", "client-gone", "outcome", OutcomeError.String(), "error", err.Error())
		return false
	}
	r.limits.established(who)
	established = true
	r.stats.outcomes[OutcomeAccepted].Add(1)
	r.stats.open.Add(1)
	log.Info("flow accepted", "outcome", OutcomeAccepted.String(), "src4", nc.LocalAddr().String(), "dial_seconds", dialTime.Seconds())

	startPipe(r.ctx, c, server, r.cfg.IdleTimeout, pipeStats{ClientToServer: &r.stats.bytesIn, ServerToClient: &r.stats.bytesOut}, func(res pipeResult) {
		r.limits.done(who, true)
		r.stats.open.Add(-1)
		r.stats.ended[endIndex(res.End)].Add(1)
		// The fields of the metrics, so that logs and metrics add up.
		attrs := []any{"outcome", OutcomeAccepted.String(), "end", string(res.End),
			"bytes_client_to_server", res.ClientToServer, "bytes_server_to_client", res.ServerToClient,
			"dial_seconds", dialTime.Seconds(), "duration_seconds", time.Since(start).Seconds()}
		if res.Err != nil {
			attrs = append(attrs, "error", res.Err.Error())
		}
		log.Info("flow finished", attrs...)
		r.flows.end()
	})
	return true
}

// reasonFDLimit is the refusal reason when faithif is out of descriptors.
const reasonFDLimit = "fd-limit"

// refuse answers req with how, counts the flow under the reason's outcome
// and logs one line with the reason and attrs. Running out of descriptors is
// logged as an error that says what to do, and counted in stats.fdLimit as
// well.
func (r *Relay) refuse(req flow.Request, log *slog.Logger, how flow.Refusal, reason string, attrs ...any) {
	outcome := outcomeOf(reason)
	r.stats.outcomes[outcome].Add(1)
	req.Refuse(how)
	attrs = append([]any{"reason", reason, "outcome", outcome.String(), "answer", how.String()}, attrs...)
	switch reason {
	case reasonFDLimit:
		r.stats.fdLimit.Add(1)
		log.Error("flow refused: out of file descriptors; raise the hard RLIMIT_NOFILE (LimitNOFILE= in systemd, ulimit -Hn) or lower --max-flows-per-client", attrs...)
	case "limit":
		log.Warn("flow refused", attrs...)
	default:
		log.Info("flow refused", attrs...)
	}
}
