package relay

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
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
	// Rules are the access rules; nil (no access file): permit what the
	// Mapper allows. A Rules with no rule denies everything.
	Rules *Rules
	// IsLocal reports whether an IPv4 address is delivered locally by the
	// router (one of its addresses, or inside a local route); such
	// destinations are always refused. Nil: none is.
	IsLocal     func(netip.Addr) bool
	DenyWith    flow.Refusal  // how denied flows are refused; the zero value is RST, faithif uses RefuseProhibited
	Limits      Limits        // zero fields: the defaults
	DialTimeout time.Duration // zero: DefaultDialTimeout
	IdleTimeout time.Duration // zero: DefaultIdleTimeout; negative: never
	Logger      *slog.Logger  // nil: slog.Default()
	// ObserveDial, if set, is given the duration of every IPv4 connection
	// attempt and whether it succeeded (for a latency histogram).
	ObserveDial func(d time.Duration, ok bool)
	// PrivilegedPorts are the destination ports (faithd -p: rlogin 513,
	// rsh 514) whose IPv4 connections come from a reserved source port,
	// ReservedPortMin to ReservedPortMax, as rresvport(3) binds one. Nil:
	// none.
	PrivilegedPorts []uint16
	// ProxyProtocolPorts are the destination ports whose IPv4 connections
	// start with a PROXY protocol v2 header naming the IPv6 client and the
	// FAITH address it connected to, before any byte of the client's.
	// Nil: none.
	ProxyProtocolPorts []uint16
	// Apps are the application relays by destination port (app.go): a
	// flow to one of these ports is set up as any other, then carried by
	// its App instead of the copy loop. Nil: none.
	Apps map[uint16]App
}

// Relay decides captured flows and carries the accepted ones to IPv4. Its
// Handle method is the stack's flow.Handler.
type Relay struct {
	cfg     Config
	dialer  net.Dialer
	dialVia func(context.Context, *net.Dialer, string) (net.Conn, error) // tests: where dials go; nil: the dialer
	rules   atomic.Pointer[Rules]
	limits  clientLimiter
	// halfOpen counts the flows between their choice of dial first or
	// handshake first and the end of their client's handshake (Accept):
	// the half-open handshakes the relay waits on.
	halfOpen atomic.Int64
	// dialing counts the IPv4 connections being set up, in either order:
	// from the start of a flow's dial until the flow is relayed or has
	// failed (a dial-first flow's connection waiting for its client
	// included). Each holds a descriptor. At most
	// Limits.MaxHandshakesTotal (startDial).
	dialing atomic.Int64
	recent  recentRefusals
	logs    *logLimiter
	stats   stats

	flows  tracker            // flows being decided or relayed
	live   liveFlows          // flows being set up (once permitted) or relayed, for Flows
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
	cfg.Limits = cfg.Limits.withDefaults()
	r := &Relay{cfg: cfg, dialer: net.Dialer{Timeout: cfg.DialTimeout, Control: oobInline}, logs: newLogLimiter(cfg.Logger, realClock{})}
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

// Limits returns the limits in force.
func (r *Relay) Limits() Limits { return r.cfg.Limits }

// Handle decides one captured flow and, if it is accepted, relays it until
// it ends or the relay is closed; it is the stack's flow.Handler.
//
// Normally the IPv4 connection is made before the client's handshake
// completes ("dial first"), so a client never sees a connection that then
// closes: it sees the IPv4 side's answer. But a dial-first flow holds an
// IPv4 connection until its client completes the handshake, which a spoofed
// source never does. So while Limits.DialFirst or more handshakes are
// half-open (dialling, or waiting for the client) the relay is under
// pressure (a SYN flood, perhaps from spoofed sources): it completes the
// client's handshake first, which proves the client's address, then dials;
// a failed dial then resets the client's connection. Dial-first flows are
// thus at most Limits.DialFirst, and a flood that keeps the handshake table
// full costs no IPv4 connection beyond them. Whatever the order, at most
// Limits.MaxHandshakesTotal IPv4 connections are being set up at once, and
// they count against the descriptor limit (startDial). Once Shutdown or
// Close has begun, new flows are refused with a RST.
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

// flowSetup is one flow being decided, and then relayed.
type flowSetup struct {
	req      flow.Request
	tuple    fourTuple
	log      *slog.Logger
	debug    bool // log is enabled at debug level: log each step of the SYN
	start    time.Time
	to       netip.AddrPort
	dialer   *net.Dialer
	bind4    netip.Addr // the rule's BIND4, if any
	reserved bool       // bind a reserved source port (PrivilegedPorts)
	proxy    bool       // send a PROXY protocol header first

	liveLinks    // its place in Relay.live
	flowProgress // what Relay.Flows reads once it is relayed
}

// handle decides req and starts relaying it; it reports whether it did, in
// which case the pipe's end calls r.flows.end.
func (r *Relay) handle(req flow.Request) bool {
	f := &flowSetup{req: req, tuple: fourTuple{req.Client(), req.Dest()}, start: time.Now()}
	f.log = r.cfg.Logger.With("client", f.tuple.client.String(), "dst6", f.tuple.dest.String())
	// Checked once per flow, so that the steps' lines cost nothing above
	// debug level: no attribute is built unless it is set.
	f.debug = f.log.Enabled(context.Background(), slog.LevelDebug)
	if f.debug {
		f.log.Debug("flow captured")
	}
	addr := f.tuple.client.Addr()
	if how, reason, ok := r.recent.lookup(f.tuple, f.start); ok {
		// The same 4-tuple's dial failed a moment ago: the same answer,
		// no second dial, not a second flow.
		r.stats.repeated.Add(1)
		req.Refuse(how)
		if f.log.Enabled(context.Background(), slog.LevelDebug) && r.logs.allow("repeated", clientOf(addr), slog.LevelDebug) {
			f.log.Debug("flow refused again", "reason", reason, "answer", how.String())
		}
		return false
	}
	if ok, limit := r.limits.admit(addr); !ok {
		// Too many handshakes: drop the SYN, the client retries in a
		// second, as with a full listen backlog. Too many flows: say no.
		answer := flow.RefuseReset
		if limit == limitHandshakes || limit == limitHandshakesAddr {
			answer = flow.RefuseDrop
		}
		r.refuse(f, answer, "limit", "limit", limit, "client_net", clientOf(addr).String())
		return false
	}
	established := false
	defer func() {
		if !established {
			r.limits.done(addr, false)
			r.live.remove(f)
		}
	}()

	rules := r.rules.Load()
	v := Policy{Mapper: r.cfg.Mapper, Rules: rules, IsLocal: r.cfg.IsLocal}.Check(addr, f.tuple.dest)
	if v.To.IsValid() {
		f.log = f.log.With("dst4", v.To.String())
	}
	if f.debug {
		debugVerdict(f.log, v, rules)
	}
	if v.Refused != nil {
		r.refuse(f, r.cfg.DenyWith, "denied", "error", v.Refused.Error())
		return false
	}
	if !v.Permit {
		rule := "no rule matched"
		if v.Rule != nil {
			rule = fmt.Sprintf("%s:%d", rules.File, v.Rule.Line)
		}
		r.refuse(f, r.cfg.DenyWith, "denied", "rule", rule)
		return false
	}
	if short, attrs := r.fdShort(r.dialing.Load()); short {
		// Keep descriptors for the control socket and netlink: refuse
		// before the kernel does (and, under pressure, before the
		// client's handshake; startDial checks again at the dial).
		r.refuse(f, flow.RefuseReset, reasonFDLimit, attrs...)
		return false
	}
	f.to, f.dialer = v.To, &r.dialer
	if v.Rule != nil && v.Rule.Bind.IsValid() {
		f.bind4 = v.Rule.Bind
	}
	switch {
	case slices.Contains(r.cfg.PrivilegedPorts, f.to.Port()):
		// Bound by dialReserved, to BIND4 if the rule has one.
		f.reserved = true
	case f.bind4.IsValid():
		bound := r.dialer
		bound.LocalAddr = &net.TCPAddr{IP: f.bind4.AsSlice()}
		f.dialer = &bound
	}
	f.proxy = slices.Contains(r.cfg.ProxyProtocolPorts, f.to.Port())
	r.live.add(f)
	if r.halfOpen.Add(1) <= int64(r.cfg.Limits.DialFirst()) {
		established = r.dialThenAccept(f)
	} else {
		r.stats.handshakeFirst.Add(1)
		established = r.acceptThenDial(f)
	}
	return established
}

// debugVerdict logs, at debug level, how the policy saw a flow: its
// mapping, and the access rule that decided it (FILE:LINE, or "default":
// no access file permits, no matching line denies) or why it is refused
// whatever the rules say.
func debugVerdict(log *slog.Logger, v Verdict, rules *Rules) {
	if v.To.IsValid() {
		log.Debug("flow mapped")
	} else {
		log.Debug("flow not mapped", "error", v.Refused.Error())
	}
	switch {
	case v.Refused != nil:
		log.Debug("flow rule", "rule", "always-refused", "decision", "deny", "error", v.Refused.Error())
	case v.Rule != nil:
		log.Debug("flow rule", "rule", fmt.Sprintf("%s:%d", rules.File, v.Rule.Line), "decision", permitDeny(v.Permit))
	default:
		log.Debug("flow rule", "rule", "default", "decision", permitDeny(v.Permit))
	}
}

// permitDeny names an access decision.
func permitDeny(permit bool) string {
	if permit {
		return "permit"
	}
	return "deny"
}

// dialThenAccept dials first, and completes the client's handshake only if
// the IPv4 server answered; otherwise the client hears why not.
func (r *Relay) dialThenAccept(f *flowSetup) bool {
	if reason, attrs := r.startDial(); reason != "" {
		// No room to dial: as a full handshake table, the SYN is
		// dropped and the client retries (out of descriptors: a RST).
		answer := flow.RefuseDrop
		if reason == reasonFDLimit {
			answer = flow.RefuseReset
		}
		r.halfOpen.Add(-1)
		r.refuse(f, answer, reason, attrs...)
		return false
	}
	server, took, err := r.dial(f, false)
	if err != nil {
		r.dialing.Add(-1)
		reason, answer := dialFailure(err)
		r.refuse(f, answer, reason, "error", err.Error(), "dial_seconds", took.Seconds())
		r.halfOpen.Add(-1)
		return false
	}
	c, err := r.accept(f)
	if err != nil {
		server.Abort()
		r.dialing.Add(-1)
		r.clientGone(f, err)
		return false
	}
	r.relay(f, c, server, took, false)
	return true
}

// acceptThenDial completes the client's handshake first (a spoofed source
// never does, so it costs no IPv4 connection), then dials; if the dial
// fails, or there is no room to dial (startDial), the client's connection
// is reset.
func (r *Relay) acceptThenDial(f *flowSetup) bool {
	c, err := r.accept(f)
	if err != nil {
		r.clientGone(f, err)
		return false
	}
	if reason, attrs := r.startDial(); reason != "" {
		c.Abort()
		r.resetAfterHandshake(f, reason, flow.RefuseReset, attrs...)
		return false
	}
	server, took, err := r.dial(f, true)
	if err != nil {
		r.dialing.Add(-1)
		c.Abort()
		reason, answer := dialFailure(err)
		r.resetAfterHandshake(f, reason, answer, "error", err.Error(), "dial_seconds", took.Seconds())
		return false
	}
	r.relay(f, c, server, took, true)
	return true
}

// resetAfterHandshake counts and logs a flow whose client's connection was
// reset after its handshake, for reason; answer is what a SYN of the same
// 4-tuple gets for a while if the reason's outcome is remembered.
func (r *Relay) resetAfterHandshake(f *flowSetup, reason string, answer flow.Refusal, attrs ...any) {
	outcome := r.count(reason)
	if remembered(outcome) {
		r.recent.remember(f.tuple, answer, reason, time.Now())
	}
	r.logRefusal(f, reason, append([]any{"reason", reason, "outcome", outcome.String(), "answer", flow.RefuseReset.String(),
		"after_handshake", true}, attrs...)...)
}

// accept completes the client's handshake; the flow is no longer
// half-open.
func (r *Relay) accept(f *flowSetup) (flow.Conn, error) {
	defer r.halfOpen.Add(-1)
	return f.req.Accept()
}

// clientGone counts and logs a flow whose client's handshake failed.
func (r *Relay) clientGone(f *flowSetup, err error) {
	r.stats.outcomes[OutcomeError].Add(1)
	r.logRefusal(f, "client-gone", "reason", "client-gone", "outcome", OutcomeError.String(), "error", err.Error())
}

// relay counts the flow accepted and copies it until it ends.
func (r *Relay) relay(f *flowSetup, c flow.Conn, server *kernelConn, dialTime time.Duration, afterHandshake bool) {
	addr := f.tuple.client.Addr()
	r.limits.established(addr)
	r.stats.outcomes[OutcomeAccepted].Add(1)
	r.stats.open.Add(1)
	r.dialing.Add(-1) // after open: the descriptor is never uncounted
	f.src4 = server.localAddrPort()
	attrs := []any{"outcome", OutcomeAccepted.String(), "src4", f.src4.String(), "dial_seconds", dialTime.Seconds()}
	if afterHandshake {
		attrs = append(attrs, "after_handshake", true)
	}
	f.log.Info("flow accepted", attrs...)

	m := &meter{start: time.Now()}
	done := func(res pipeResult) {
		r.live.remove(f)
		r.limits.done(addr, true)
		r.stats.open.Add(-1)
		r.stats.ended[endIndex(res.End)].Add(1)
		// The fields of the metrics, so that logs and metrics add up.
		attrs := []any{"outcome", OutcomeAccepted.String(), "end", string(res.End),
			"bytes_client_to_server", res.ClientToServer, "bytes_server_to_client", res.ServerToClient,
			"dial_seconds", dialTime.Seconds(), "duration_seconds", time.Since(f.start).Seconds()}
		if res.Err != nil {
			attrs = append(attrs, "error", res.Err.Error())
		}
		f.log.Info("flow finished", attrs...)
		r.flows.end()
	}
	f.meter.Store(m) // after src4: Flows reads src4 once it sees the meter
	if app := r.cfg.Apps[f.tuple.dest.Port()]; app != nil {
		go r.runApp(app, f, c, server, m, done)
		return
	}
	newMeteredPipe(c, server, m, r.pipeStats(), done).run(r.ctx, r.cfg.IdleTimeout)
}

// pipeStats are the relay's byte counters, for a pipe to count in.
func (r *Relay) pipeStats() pipeStats {
	return pipeStats{ClientToServer: &r.stats.bytesIn, ServerToClient: &r.stats.bytesOut}
}

// refuse answers the flow with how, counts it under the reason's outcome,
// remembers a failed dial's answer for the 4-tuple, and logs one line with
// the reason and attrs (rate-limited).
func (r *Relay) refuse(f *flowSetup, how flow.Refusal, reason string, attrs ...any) {
	outcome := r.count(reason)
	if remembered(outcome) {
		r.recent.remember(f.tuple, how, reason, time.Now())
	}
	f.req.Refuse(how)
	r.logRefusal(f, reason, append([]any{"reason", reason, "outcome", outcome.String(), "answer", how.String()}, attrs...)...)
}

// count counts a refused flow under the reason's outcome (and, out of
// descriptors, in stats.fdLimit as well) and returns the outcome.
func (r *Relay) count(reason string) Outcome {
	outcome := outcomeOf(reason)
	r.stats.outcomes[outcome].Add(1)
	switch reason {
	case reasonFDLimit:
		r.stats.fdLimit.Add(1) // after the outcome: see Counters
	case reasonDials:
		r.stats.dialsLimited.Add(1)
	}
	return outcome
}

// logRefusal logs a refused flow, unless its (reason, client /64) has
// logged enough in this window (logLimiter). Running out of descriptors is
// logged as an error that says what to do, a limit as a warning.
func (r *Relay) logRefusal(f *flowSetup, reason string, attrs ...any) {
	level, msg := slog.LevelInfo, "flow refused"
	switch reason {
	case reasonFDLimit:
		level = slog.LevelError
		msg = "flow refused: out of file descriptors; raise the hard RLIMIT_NOFILE (LimitNOFILE= in systemd, ulimit -Hn) or lower the flow limits"
	case "limit":
		level = slog.LevelWarn
	case reasonDials:
		level, msg = slog.LevelWarn, "flow refused: max_handshakes IPv4 connections are being set up"
	}
	if !f.log.Enabled(context.Background(), level) || !r.logs.allow(reason, clientOf(f.tuple.client.Addr()), level) {
		return
	}
	f.log.Log(context.Background(), level, msg, attrs...)
}
