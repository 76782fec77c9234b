package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/faithif/faithif/faithif"
	"github.com/faithif/faithif/relay"
	"github.com/faithif/faithif/stack"
)

// instanceConfig is everything `create` decides before anything is created.
type instanceConfig struct {
	name        string
	prefixes    []netip.Prefix
	mtu         int
	keepFaith   bool // --keepfaith: set the global switch to 1
	idleTimeout time.Duration
	dialTimeout time.Duration
	grace       time.Duration   // drain period on SIGTERM
	routes      []faithif.Route // --route: each prefix; run: [[interface.route]]
	rulesPath   string          // --config
	denyWith    relay.Refusal   // --deny-with
	limits      relay.Limits    // --max-flows-per-client, --max-handshakes-per-client
	runDir      faithif.RunDir
	observeDial func(time.Duration, bool) // metrics: every IPv4 dial
}

// instance wires one interface: TUN → stack → relay, plus its control
// socket. It implements faithif.Controller.
type instance struct {
	cfg     instanceConfig
	log     *slog.Logger
	iface   *faithif.Interface
	stack   *stack.Stack
	relay   *relay.Relay
	mapper  *relay.Mapper
	control *faithif.ControlServer
	started time.Time
	flows   flowTracker
	local   atomic.Pointer[faithif.LocalAddrs] // the router's IPv4 addresses, while running
	running atomic.Bool                        // from ready until run returns

	stopOnce  sync.Once
	stopCh    chan stopRequest // the first stop request
	forceOnce sync.Once
	forceCh   chan struct{} // closed by a second stop request
}

// stopRequest asks an instance to drain and stop.
type stopRequest struct {
	why   string
	grace time.Duration
}

// newInstance checks the configuration and loads the rules; nothing is
// created yet.
func newInstance(cfg instanceConfig, log *slog.Logger) (*instance, error) {
	mapper, err := relay.NewMapper(cfg.prefixes...)
	if err != nil {
		return nil, err
	}
	var rules *relay.Rules
	if cfg.rulesPath != "" {
		if rules, err = relay.LoadRules(cfg.rulesPath, faithif.IsLocalIPv4); err != nil {
			return nil, err
		}
	}
	in := &instance{
		cfg: cfg, log: log, mapper: mapper,
		stopCh: make(chan stopRequest, 1), forceCh: make(chan struct{}),
	}
	in.relay = relay.New(relay.Config{Mapper: mapper, Rules: rules, DenyWith: cfg.denyWith, IsLocal: in.isLocal, Limits: cfg.limits,
		DialTimeout: cfg.dialTimeout, IdleTimeout: cfg.idleTimeout, Logger: log.With("interface", cfg.name), ObserveDial: cfg.observeDial})
	return in, nil
}

// isLocal reports whether a is one of the router's IPv4 addresses.
func (in *instance) isLocal(a netip.Addr) bool {
	l := in.local.Load()
	return l != nil && l.Contains(a)
}

// run creates the interface and serves it until it is stopped, the interface
// is removed, or reading fails. ready is called once packets are being read.
// On return nothing it created is left: interface, routes, control socket.
func (in *instance) run(ready func()) error {
	cfg, log := in.cfg, in.log
	keep, err := cfg.runDir.KeepFaith()
	if err != nil {
		return err
	}

	local, err := faithif.WatchLocalAddrs()
	if err != nil {
		return fmt.Errorf("create %s: %w", cfg.name, err)
	}
	defer local.Close()
	in.local.Store(local)

	in.iface, err = faithif.Create(cfg.name, cfg.mtu)
	if err != nil {
		return err
	}
	defer in.iface.Close()
	if len(cfg.routes) > 0 {
		if err := in.iface.AddRoutes(cfg.routes); err != nil {
			return fmt.Errorf("create %s: %w", cfg.name, err)
		}
	}
	in.started = time.Now()

	// Flows run under their own context, so that stopping can reset them
	// while the TUN is still there to carry the RSTs.
	flowCtx, cancelFlows := context.WithCancel(context.Background())
	defer cancelFlows()
	in.stack, err = stack.New(in.iface.Device(), func(r *stack.Request) {
		if !in.flows.begin() {
			r.Refuse(stack.RefuseReset) // draining: no new flows
			return
		}
		in.relay.Handle(flowCtx, flowRequest{r}, in.flows.end)
	}, stack.Options{MTU: cfg.mtu})
	if err != nil {
		return fmt.Errorf("create %s: %w", cfg.name, err)
	}
	in.stack.Link().SetCapture(keep)

	in.control, err = faithif.Listen(cfg.runDir.SocketPath(cfg.name), in, log)
	if err != nil {
		in.stack.Close()
		return fmt.Errorf("create %s: %w", cfg.name, err)
	}
	go in.control.Serve()
	if cfg.keepFaith && !keep {
		// Only now that nothing can fail any more: --keepfaith is
		// `sysctl net.inet6.ip6.keepfaith=1`, global.
		if err := setKeepFaithEverywhere(context.Background(), cfg.runDir, true); err != nil {
			log.Warn("setting keepfaith", "error", err.Error())
		}
		keep = true
		in.stack.Link().SetCapture(true)
	}

	runDone := make(chan struct{})
	go func() {
		select {
		case req := <-in.stopCh:
			in.drain(req, cancelFlows)
		case <-runDone:
		}
	}()
	if rs := in.relay.Rules(); rs == nil || len(rs.Rules) == 0 {
		log.Warn("no access rules: every destination is permitted except the always-refused ones", "interface", cfg.name, "rules", cfg.rulesPath)
	}
	defer in.running.Store(false)
	runErr := in.stack.Run(func() {
		in.running.Store(true)
		log.Info("ready", "interface", cfg.name, "prefixes", fmt.Sprint(in.mapper.Prefixes()), "mtu", cfg.mtu,
			"keepfaith", b2i(keep), "fd_limit", relay.FDLimit(), "routes", fmt.Sprint(in.iface.Routes()), "control", cfg.runDir.SocketPath(cfg.name), "pid", os.Getpid())
		if ready != nil {
			ready()
		}
	})
	close(runDone)
	stopped := false
	in.stopOnce.Do(func() { stopped = true }) // no drain can start any more
	if stopped {
		log.Info("stopping", "interface", cfg.name, "why", fmt.Sprint(firstErr(runErr, fmt.Errorf("%s was removed", cfg.name))),
			"flows_open", in.relay.Stats().FlowsOpen.Load())
	}
	cancelFlows()
	in.control.Close()
	in.stack.Close()
	in.flows.closeAndWait(-1)
	if runErr != nil {
		return fmt.Errorf("%s: %w", cfg.name, runErr)
	}
	log.Info("stopped", "interface", cfg.name)
	return nil
}

// drain stops accepting flows, lets the open ones finish for the grace
// period (or until a second stop request), resets what is left, and closes
// the TUN, which ends run.
func (in *instance) drain(req stopRequest, cancelFlows context.CancelFunc) {
	open := in.relay.Stats().FlowsOpen.Load()
	in.log.Info("stopping", "interface", in.cfg.name, "why", req.why, "flows_open", open, "grace", req.grace.String())
	finished := in.flows.closeAndWait(req.grace, in.forceCh)
	if !finished {
		in.log.Warn("resetting flows still open", "interface", in.cfg.name, "flows_open", in.relay.Stats().FlowsOpen.Load())
	}
	cancelFlows()
	in.flows.closeAndWait(2 * time.Second) // let the RSTs leave
	in.stack.Link().Close()                // what the TUN reports from now on is its closing
	in.iface.Close()
}

// Stop asks the instance to drain for grace and stop; a second call stops at
// once.
func (in *instance) Stop(why string, grace time.Duration) {
	first := false
	in.stopOnce.Do(func() {
		first = true
		in.stopCh <- stopRequest{why: why, grace: grace}
	})
	if !first {
		in.forceOnce.Do(func() {
			in.log.Info("stopping now", "interface", in.cfg.name, "why", why)
			close(in.forceCh)
		})
	}
}

// Destroy implements faithif.Controller.
func (in *instance) Destroy(grace time.Duration) {
	if grace <= 0 {
		grace = in.cfg.grace
	}
	in.Stop("destroy", grace)
}

// Reload implements faithif.Controller: it rereads the access file and
// swaps it in; open flows are not touched.
func (in *instance) Reload() error {
	if in.cfg.rulesPath == "" {
		return fmt.Errorf("reload %s: no access file (start with --config FILE)", in.cfg.name)
	}
	rs, err := relay.LoadRules(in.cfg.rulesPath, faithif.IsLocalIPv4)
	if err != nil {
		in.log.Error("reload failed, keeping the old rules", "interface", in.cfg.name, "error", err.Error())
		return fmt.Errorf("reload %s: %w (the old rules stay)", in.cfg.name, err)
	}
	in.relay.SetRules(rs)
	in.log.Info("rules reloaded", "interface", in.cfg.name, "rules", rs.File, "count", len(rs.Rules))
	return nil
}

// Status implements faithif.Controller.
func (in *instance) Status() faithif.Status {
	rs, ls := in.relay.Stats(), in.stack.Link().Stats()
	var prefixes []string
	for _, p := range in.mapper.Prefixes() {
		prefixes = append(prefixes, p.String())
	}
	st := faithif.Status{
		Name:               in.cfg.name,
		PID:                os.Getpid(),
		Prefixes:           prefixes,
		Routes:             in.iface.Routes(),
		Rules:              in.cfg.rulesPath,
		Draining:           in.flows.isClosed(),
		MTU:                in.iface.MTU(),
		KeepFaith:          in.stack.Link().Capture(),
		UptimeSeconds:      time.Since(in.started).Seconds(),
		FlowsOpen:          rs.FlowsOpen.Load(),
		FlowsTotal:         rs.Total(),
		FlowsAccepted:      rs.Accepted(),
		FlowsRefused:       rs.Refused(),
		FlowsDenied:        rs.Denied(),
		FlowsLimited:       rs.Limited(),
		FlowsFDLimit:       rs.FlowsFDLimit.Load(),
		FDLimit:            relay.FDLimit(),
		Clients:            in.relay.Clients(),
		MaxFlowsPerClient:  in.relay.Limits().MaxFlows,
		MaxHandshakesPer:   in.relay.Limits().MaxHandshakes,
		HandshakesInFlight: in.stack.Stats().InFlight.Load(),
		ICMPErrorsSent:     in.stack.ICMPErrorsSent(),
		ICMPRateLimited:    in.stack.ICMPRateLimited(),
		BytesIn:            rs.BytesIn.Load(),
		BytesOut:           rs.BytesOut.Load(),
		PacketsIn:          ls.PacketsIn.Load(),
		PacketsOut:         ls.PacketsOut.Load(),
		PacketsDiscarded:   ls.DiscardedByReason(),
		ICMPv6In:           ls.ICMPv6ByType(),
		ICMPv6Out:          in.stack.ICMPv6SentByType(),
	}
	if r := in.relay.Rules(); r != nil {
		st.RuleCount = len(r.Rules)
	}
	st.FlowOutcomes = make(map[string]uint64, relay.NumOutcomes)
	for o := range relay.NumOutcomes {
		st.FlowOutcomes[o.String()] = rs.Outcomes[o].Load()
	}
	st.FlowEnds = make(map[string]uint64, len(relay.Ends))
	for k, e := range relay.Ends {
		st.FlowEnds[string(e)] = rs.Ended[k].Load()
	}
	return st
}

// Ready returns nil while the instance relays: it is running and not
// draining, keepfaith is 1 and the interface is up; else it says why not.
func (in *instance) Ready() error {
	name := in.cfg.name
	switch {
	case !in.running.Load():
		return fmt.Errorf("%s is not running", name)
	case in.flows.isClosed():
		return fmt.Errorf("%s is draining", name)
	case !in.stack.Link().Capture():
		return fmt.Errorf("%s: keepfaith is 0, nothing is captured", name)
	}
	return in.iface.CheckUp()
}

// SetKeepFaith implements faithif.Controller.
func (in *instance) SetKeepFaith(on bool) {
	if in.stack.Link().Capture() != on {
		in.log.Info("keepfaith changed", "interface", in.cfg.name, "keepfaith", b2i(on))
	}
	in.stack.Link().SetCapture(on)
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// flowTracker counts running flow handlers so that stopping can wait for
// them; once closed it admits no new ones.
type flowTracker struct {
	mu     sync.Mutex
	n      int
	closed bool
	zero   chan struct{} // closed when n drops to 0 while someone waits
}

func (f *flowTracker) begin() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.n++
	return true
}

func (f *flowTracker) end() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n--
	if f.n == 0 && f.zero != nil {
		close(f.zero)
		f.zero = nil
	}
}

func (f *flowTracker) isClosed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closed
}

// closeAndWait admits no new handlers and waits for the running ones, for
// at most timeout (negative: no limit) or until abort is closed. It reports
// whether they all finished.
func (f *flowTracker) closeAndWait(timeout time.Duration, abort ...<-chan struct{}) bool {
	f.mu.Lock()
	f.closed = true
	if f.n == 0 {
		f.mu.Unlock()
		return true
	}
	if f.zero == nil {
		f.zero = make(chan struct{})
	}
	done := f.zero
	f.mu.Unlock()
	var expire <-chan time.Time
	if timeout >= 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		expire = t.C
	}
	var stop <-chan struct{}
	if len(abort) > 0 {
		stop = abort[0]
	}
	select {
	case <-done:
		return true
	case <-expire:
	case <-stop:
	}
	return false
}

// flowRequest adapts a stack.Request to relay.Request.
type flowRequest struct{ r *stack.Request }

func (f flowRequest) Client() netip.AddrPort   { return f.r.Client }
func (f flowRequest) Dest() netip.AddrPort     { return f.r.Dest }
func (f flowRequest) Refuse(how relay.Refusal) { f.r.Refuse(refusals[how]) }

var refusals = map[relay.Refusal]stack.Refusal{
	relay.RefuseReset:           stack.RefuseReset,
	relay.RefuseProhibited:      stack.RefuseProhibited,
	relay.RefuseNoRoute:         stack.RefuseNoRoute,
	relay.RefuseAddrUnreachable: stack.RefuseAddrUnreachable,
	relay.RefusePortUnreachable: stack.RefusePortUnreachable,
	relay.RefuseDrop:            stack.RefuseDrop,
}

func (f flowRequest) Accept() (relay.Conn, error) {
	c, err := f.r.Accept()
	if err != nil {
		return nil, err
	}
	return c, nil
}

// setKeepFaithEverywhere stores the global keepfaith value and applies it to
// every running instance in runDir.
func setKeepFaithEverywhere(ctx context.Context, runDir faithif.RunDir, on bool) error {
	if err := runDir.SetKeepFaith(on); err != nil {
		return err
	}
	names, err := runDir.Instances()
	if err != nil {
		return err
	}
	var errs []error
	for _, name := range names {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := faithif.Client{Path: runDir.SocketPath(name)}.SetKeepFaith(cctx, on)
		cancel()
		if err != nil && !errors.Is(err, faithif.ErrNotRunning) {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}
