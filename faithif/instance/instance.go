package instance

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/faithif/faithif/faithif"
	"github.com/faithif/faithif/faithif/config"
	"github.com/faithif/faithif/faithif/control"
	"github.com/faithif/faithif/faithif/dns64"
	"github.com/faithif/faithif/faithif/flows"
	"github.com/faithif/faithif/faithif/status"
	"github.com/faithif/faithif/faithif/systemd"
	"github.com/faithif/faithif/relay"
	"github.com/faithif/faithif/relay/flow"
	"github.com/faithif/faithif/relay/ftp"
	"github.com/faithif/faithif/stack"
)

// Options are what an Instance needs besides its interface's configuration.
type Options struct {
	// RunDir holds the control socket and the keepfaith value of the
	// network namespace.
	RunDir faithif.RunDir
	// Owner is the command running the instance, status.OwnerCreate or
	// status.OwnerRun, as its status reports it; the control socket
	// refuses to destroy one of the appliance's.
	Owner string
	// KeepFaith sets the namespace's switch net.inet6.ip6.keepfaith to 1 once
	// the instance runs (create --keepfaith).
	KeepFaith bool
	// ObserveDial, if set, is given every IPv4 dial's duration and
	// result (the metrics' histogram).
	ObserveDial func(time.Duration, bool)
	// ObserveUpstream, if set, is given every DNS64 upstream query's
	// duration and result (the metrics' histogram; dns64.Options).
	ObserveUpstream func(upstream string, d time.Duration, result string)
	// Logger receives the instance's log; nil: slog.Default().
	Logger *slog.Logger
	// Notifier, if set, is told of reloads and of the stop (the one who
	// calls Run announces readiness).
	Notifier *systemd.Notifier
}

// Instance is one faithN: TUN → stack → relay, with its control socket. It
// implements control.Controller.
type Instance struct {
	cfg     config.Interface
	opts    Options
	log     *slog.Logger
	mapper  *relay.Mapper
	relay   *relay.Relay
	dns64   *dns64.Responder // nil without [dns64]
	ftp     *ftp.Relay       // nil without FTP ports
	started time.Time

	// Set by Run.
	iface   *faithif.Interface
	stack   *stack.Stack
	control *control.Server
	local   atomic.Pointer[faithif.LocalAddrs] // the router's IPv4 addresses, while running
	running atomic.Bool                        // from ready until Run returns

	// The access rules' reloads: counts by result, whether the last one
	// succeeded (true before any) and when the rules in force were loaded
	// (Unix seconds: start-up, or the last successful reload).
	reloadsOK, reloadsFailed atomic.Uint64
	lastReloadFailed         atomic.Bool
	rulesLoadedAt            atomic.Int64
	// rulesFile is the access file in force ("" for none): the
	// configuration's, until a reload names another. reloadMu makes
	// reloads one at a time.
	rulesFile atomic.Pointer[string]
	reloadMu  sync.Mutex

	stopOnce  sync.Once
	stopCh    chan stopRequest // the first stop request
	forceOnce sync.Once
	force     context.Context    // cancelled by a second stop request
	forceStop context.CancelFunc // cancels force
}

// stopRequest asks an instance to drain and stop.
type stopRequest struct {
	why   string
	grace time.Duration
}

// New prepares the instance cfg describes (checked by package config, its
// access file already read); nothing is created until Run.
func New(cfg config.Interface, opts Options) (*Instance, error) {
	mapper, err := relay.NewMapper(cfg.Prefixes...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.Name, err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	in := &Instance{cfg: cfg, opts: opts, log: log, mapper: mapper, stopCh: make(chan stopRequest, 1)}
	in.rulesLoadedAt.Store(time.Now().Unix())
	in.rulesFile.Store(&cfg.Rules)
	in.force, in.forceStop = context.WithCancel(context.Background())
	var apps map[uint16]relay.App
	if len(cfg.FTPPorts) > 0 {
		in.ftp = ftp.New(ftp.Config{Network: stackNetwork{in}})
		apps = make(map[uint16]relay.App, len(cfg.FTPPorts))
		for _, p := range cfg.FTPPorts {
			apps[p] = in.ftp
		}
	}
	in.relay = relay.New(relay.Config{
		Mapper: mapper, Rules: cfg.RuleSet, IsLocal: in.isLocal, DenyWith: cfg.DenyWith, Limits: cfg.Limits,
		DialTimeout: cfg.DialTimeout, IdleTimeout: cfg.IdleTimeout, ObserveDial: opts.ObserveDial,
		PrivilegedPorts: cfg.PrivilegedPorts, ProxyProtocolPorts: cfg.ProxyProtocolPorts,
		Logger: log.With("interface", cfg.Name), Apps: apps,
	})
	if cfg.DNS64 != nil {
		// The responder asks the relay's own policy whether it would
		// relay a client to an address before handing it out.
		in.dns64, err = dns64.New(*cfg.DNS64, dns64.Options{
			Policy: in.relay.Policy, LocalNets: faithif.NewLocalNets().Contains,
			ObserveUpstream: opts.ObserveUpstream, Logger: log.With("interface", cfg.Name),
		})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", cfg.Name, err)
		}
	}
	return in, nil
}

// stackNetwork is the instance's stack as the FTP relay's flow.Network.
// The relay exists before the stack (Run makes it), but flows, and so FTP
// sessions, only come from the stack once it runs.
type stackNetwork struct{ in *Instance }

// Listen implements flow.Network.
func (n stackNetwork) Listen(from netip.Addr, local netip.AddrPort) (flow.Listener, error) {
	return n.in.stack.Listen(from, local)
}

// Dial implements flow.Network.
func (n stackNetwork) Dial(ctx context.Context, local, remote netip.AddrPort) (flow.Conn, error) {
	return n.in.stack.Dial(ctx, local, remote)
}

// Name returns the interface's name.
func (in *Instance) Name() string { return in.cfg.Name }

// Grace returns how long a stop lets open flows finish by default.
func (in *Instance) Grace() time.Duration { return in.cfg.Grace }

// RulesFile returns the access file, empty if there is none.
func (in *Instance) RulesFile() string { return *in.rulesFile.Load() }

// Running reports whether the instance relays: from ready until Run
// returns.
func (in *Instance) Running() bool { return in.running.Load() }

// isLocal reports whether a is one of the router's IPv4 addresses.
func (in *Instance) isLocal(a netip.Addr) bool {
	l := in.local.Load()
	return l != nil && l.Contains(a)
}

// Run creates the interface and serves it until it is stopped, the
// interface is removed, or reading fails. ready is called once packets are
// being read. On return nothing it created is left: interface, routes,
// control socket.
func (in *Instance) Run(ready func()) error {
	cfg, log := in.cfg, in.log
	if err := in.opts.RunDir.Make(); err != nil {
		return fmt.Errorf("create %s: %w", cfg.Name, err)
	}
	keep, err := in.opts.RunDir.KeepFaith()
	if err != nil {
		return err
	}
	if err := in.checkOverlap(); err != nil {
		return fmt.Errorf("create %s: %w", cfg.Name, err)
	}
	local, err := faithif.WatchLocalAddrs(log)
	if err != nil {
		return fmt.Errorf("create %s: %w", cfg.Name, err)
	}
	defer local.Close()
	in.local.Store(local)
	if in.dns64 != nil {
		// Bound now, so that an address in use fails before anything
		// is created; answered once the interface relays.
		if err := in.dns64.Listen(); err != nil {
			return fmt.Errorf("create %s: %w", cfg.Name, err)
		}
		defer in.dns64.Close()
	}

	in.iface, err = faithif.Create(cfg.Name, cfg.MTU)
	if err != nil {
		return err
	}
	defer in.iface.Close()
	if in.iface.Adopted() {
		in.log.Info("adopted an existing TUN device", "interface", cfg.Name, "note", "it stays, as it was, after faithif stops")
	}
	if len(cfg.Routes) > 0 {
		if err := in.iface.AddRoutes(cfg.Routes); err != nil {
			return fmt.Errorf("create %s: %w", cfg.Name, err)
		}
	}
	in.started = time.Now()

	in.stack, err = stack.New(in.iface.Device(), in.relay.Handle, stack.Options{
		MTU: cfg.MTU, MaxInFlight: in.relay.Limits().MaxHandshakesTotal,
		// The stack comes under pressure where the relay stops dialling first: one number.
		DialFirst: in.relay.Limits().DialFirst(),
	})
	if err != nil {
		return fmt.Errorf("create %s: %w", cfg.Name, err)
	}
	in.stack.Link().SetCapture(keep)
	socket := in.opts.RunDir.SocketPath(cfg.Name)
	in.control, err = control.Listen(socket, in, log)
	if err != nil {
		in.stack.Close()
		return fmt.Errorf("create %s: %w", cfg.Name, err)
	}
	go in.control.Serve()
	if in.opts.KeepFaith && !keep {
		// Only now that nothing can fail any more: --keepfaith is
		// `sysctl net.inet6.ip6.keepfaith=1`, for the whole namespace.
		if err := control.SetKeepFaith(context.Background(), in.opts.RunDir, true); err != nil {
			log.Warn("setting keepfaith", "error", err.Error())
		}
		keep = true
		in.stack.Link().SetCapture(true)
	}

	runDone := make(chan struct{})
	removed := in.control.Removed()
	go func() {
		for {
			select {
			case req := <-in.stopCh:
				in.drain(req)
				return
			case <-removed:
				// Nothing can reach the instance any more: stop as
				// destroy would, unless a stop has begun already.
				removed = nil
				in.stopOnce.Do(func() {
					log.Warn("control socket removed: stopping as if destroyed", "interface", cfg.Name, "path", socket, "grace", cfg.Grace.String())
					in.stopCh <- stopRequest{why: "control socket removed", grace: cfg.Grace}
				})
			case <-runDone:
				return
			}
		}
	}()
	logRules(log, cfg.Name, in.relay.Rules(), nil)
	defer in.running.Store(false)
	runErr := in.stack.Run(func() {
		in.running.Store(true)
		attrs := []any{"interface", cfg.Name, "prefixes", in.mapper.Prefixes(), "mtu", cfg.MTU,
			"keepfaith", faithif.KeepFaithValue(keep), "fd_limit", relay.FDLimit(), "routes", nonNil(in.iface.Routes()), "control", socket, "pid", os.Getpid()}
		if len(cfg.PrivilegedPorts) > 0 {
			attrs = append(attrs, "privileged_ports", cfg.PrivilegedPorts)
		}
		if len(cfg.ProxyProtocolPorts) > 0 {
			attrs = append(attrs, "proxy_protocol_ports", cfg.ProxyProtocolPorts)
		}
		log.Info("ready", attrs...)
		for _, w := range in.warnings() {
			log.Warn(w, "interface", cfg.Name)
		}
		if in.dns64 != nil {
			if err := in.dns64.Serve(); err != nil {
				// Bound already: not expected. The relay goes on.
				log.Error("dns64 not serving", "interface", cfg.Name, "error", err.Error())
			}
		}
		if ready != nil {
			ready()
		}
	})
	close(runDone)
	stopped := false
	in.stopOnce.Do(func() { stopped = true }) // no drain can start any more
	if stopped {
		why := runErr
		if why == nil {
			why = fmt.Errorf("%s was removed", cfg.Name)
		}
		log.Info("stopping", "interface", cfg.Name, "why", why.Error(), "flows_open", in.relay.Counters().FlowsOpen)
		in.opts.Notifier.Stopping(fmt.Sprintf("%s stopping: %v", cfg.Name, why))
		// The interface is gone (ip link del) or unreadable: nothing can be
		// drained, as no segment reaches the IPv6 clients any more. Every
		// open flow is reset at once (relay.Close): its IPv4 server gets a
		// RST; its IPv6 client hears nothing and times out on its own.
		if n := in.relay.Counters().FlowsOpen; n > 0 {
			log.Warn("resetting open flows: the interface is gone, they cannot be drained", "interface", cfg.Name, "flows_open", n)
		}
	}
	in.relay.Close() // resets both sides of every flow still open
	ctx, cancel := context.WithTimeout(context.Background(), rstTime)
	in.relay.Wait(ctx) // the flows end as "shutdown" before the stack is closed under them
	cancel()
	in.control.Close()
	in.stack.Close() // resets what is left, which ends every flow handler
	in.relay.Wait(context.Background())
	if runErr != nil {
		return fmt.Errorf("%s: %w", cfg.Name, runErr)
	}
	log.Info("stopped", "interface", cfg.Name)
	return nil
}

// rstTime is how long a stop waits, after resetting the flows, for the RSTs
// to leave before the TUN goes.
const rstTime = 2 * time.Second

// drain stops accepting flows, lets the open ones finish for the grace
// period (or until a second stop request), resets what is left, and closes
// the TUN, which ends Run.
func (in *Instance) drain(req stopRequest) {
	name := in.cfg.Name
	open := in.relay.Counters().FlowsOpen
	in.log.Info("stopping", "interface", name, "why", req.why, "flows_open", open, "grace", req.grace.String())
	in.opts.Notifier.Stopping(fmt.Sprintf("%s draining: %d open flows, grace %s (%s)", name, open, req.grace, req.why))
	if in.dns64 != nil {
		in.dns64.Close() // no more names for a relay that takes no new flow
	}
	ctx, cancel := context.WithTimeout(in.force, req.grace)
	err := in.relay.Shutdown(ctx)
	cancel()
	if err != nil {
		in.log.Warn("resetting flows still open", "interface", name, "flows_open", in.relay.Counters().FlowsOpen)
	}
	in.relay.Close()
	ctx, cancel = context.WithTimeout(context.Background(), rstTime)
	in.relay.Wait(ctx)
	cancel()
	in.stack.Link().Close() // what the TUN reports from now on is its closing
	in.iface.Close()
}

// Stop asks the instance to drain for grace and stop; a second call stops
// at once.
func (in *Instance) Stop(why string, grace time.Duration) {
	first := false
	in.stopOnce.Do(func() {
		first = true
		in.stopCh <- stopRequest{why: why, grace: grace}
	})
	if !first {
		in.forceOnce.Do(func() {
			in.log.Info("stopping now", "interface", in.cfg.Name, "why", why)
			in.forceStop()
		})
	}
}

// Destroy implements control.Controller: Stop with grace, or the
// instance's own grace if grace is not positive.
func (in *Instance) Destroy(grace time.Duration) {
	if grace <= 0 {
		grace = in.cfg.Grace
	}
	in.Stop("destroy", grace)
}

// Reload implements control.Controller: it rereads the access file, or
// reads file instead if it is not empty, and swaps the rules in; open flows
// are not touched. On error the old rules and file stay.
func (in *Instance) Reload(file string) error {
	in.reloadMu.Lock()
	defer in.reloadMu.Unlock()
	if file == "" {
		file = in.RulesFile()
	}
	if file == "" {
		return fmt.Errorf("reload %s: no access file (start with --access FILE, or give one: faithif reload %s --access FILE)", in.cfg.Name, in.cfg.Name)
	}
	in.opts.Notifier.Reloading(fmt.Sprintf("%s: reloading %s", in.cfg.Name, file))
	rs, err := relay.LoadRules(file, faithif.IsLocalIPv4)
	if err != nil {
		in.reloadsFailed.Add(1)
		in.lastReloadFailed.Store(true)
		in.log.Error("reload failed, keeping the old rules", "interface", in.cfg.Name, "error", err.Error())
		err = fmt.Errorf("reload %s: %w (the old rules stay)", in.cfg.Name, err)
		in.opts.Notifier.Reloaded(err.Error())
		return err
	}
	old := in.relay.Rules()
	in.relay.SetRules(rs)
	in.rulesFile.Store(&file)
	in.reloadsOK.Add(1)
	in.lastReloadFailed.Store(false)
	in.rulesLoadedAt.Store(time.Now().Unix())
	in.log.Info("rules reloaded", "interface", in.cfg.Name, "rules", rs.File, "count", len(rs.Rules))
	logRules(in.log, in.cfg.Name, rs, old)
	in.opts.Notifier.Reloaded(fmt.Sprintf("%s: %s from %s", in.cfg.Name, plural(len(rs.Rules), "rule"), rs.File))
	return nil
}

// plural returns "1 rule", "2 rules".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// logRules says, at start (old nil) and at each reload, what the rules rs
// mean when they permit or deny every flow, and warns when a reload widens
// access to every flow.
func logRules(log *slog.Logger, name string, rs, old *relay.Rules) {
	file := ""
	if rs != nil {
		file = rs.File
	}
	if w := rs.Warning(); w != "" {
		log.Warn(w, "interface", name, "rules", file)
	}
	if old == nil {
		return
	}
	if all, _ := rs.PermitsAll(); all {
		if was, _ := old.PermitsAll(); !was {
			log.Warn("reload widened access to every flow: anyone who can reach the FAITH prefix may connect to any IPv4 address it maps to", "interface", name, "rules", file)
		}
	}
}

// Status implements control.Controller: the state and every counter.
func (in *Instance) Status() status.Status {
	draining := in.relay.Draining()
	lim := in.relay.Limits()
	st := status.Status{
		SchemaVersion:           status.SchemaVersion,
		Name:                    in.cfg.Name,
		PID:                     os.Getpid(),
		Owner:                   in.opts.Owner,
		UptimeSeconds:           time.Since(in.started).Seconds(),
		Prefixes:                []string{},
		Routes:                  in.iface.Routes(),
		Rules:                   in.RulesFile(),
		MTU:                     in.iface.MTU(),
		Grace:                   in.cfg.Grace.String(),
		KeepFaith:               in.stack.Link().Capture(),
		Draining:                draining,
		Up:                      in.running.Load() && !draining,
		Warnings:                in.warnings(),
		NotReady:                errString(in.Ready()),
		LastReloadSuccessful:    !in.lastReloadFailed.Load(),
		RulesLoadedAt:           in.rulesLoadedAt.Load(),
		ReloadsOK:               in.reloadsOK.Load(),
		ReloadsFailed:           in.reloadsFailed.Load(),
		RelayCounters:           in.relay.Counters(),
		MaxFlowsPerClient:       lim.MaxFlows,
		MaxHandshakesPerClient:  lim.MaxHandshakes,
		MaxFlowsPerAddress:      lim.MaxFlowsPerAddress,
		MaxHandshakesPerAddress: lim.MaxHandshakesPerAddress,
		MaxHandshakes:           lim.MaxHandshakesTotal,
		StackCounters:           in.stack.Counters(),
		DNS64Listen:             []string{},
		DNS64Upstreams:          []string{},
		DNS64Counters:           in.dns64.Counters(),
		FTPPorts:                []int{},
		FTPCounters:             in.ftp.Counters(),
	}
	st.FTPPorts = ints(in.cfg.FTPPorts)
	st.PrivilegedPorts = ints(in.cfg.PrivilegedPorts)
	st.ProxyProtocolPorts = ints(in.cfg.ProxyProtocolPorts)
	if in.dns64 != nil {
		st.DNS64Listen = in.dns64.Addrs()
		st.DNS64Upstreams = in.dns64.Upstreams()
		st.DNS64Prefix = in.dns64.Prefix().String()
	}
	for _, p := range in.mapper.Prefixes() {
		st.Prefixes = append(st.Prefixes, p.String())
	}
	if st.Routes == nil {
		st.Routes = []string{}
	}
	if st.Warnings == nil {
		st.Warnings = []string{}
	}
	if r := in.relay.Rules(); r != nil {
		st.RuleCount = len(r.Rules)
	}
	return st
}

// Flows implements control.Controller: the flows the relay is setting up
// or relaying that f selects, sorted.
func (in *Instance) Flows(f flows.Filter) flows.Table {
	return flows.Build(in.cfg.Name, in.relay.Flows(), f)
}

// ints returns ports as ints, an empty list (not nil) for none.
func ints(ports []uint16) []int {
	out := make([]int, len(ports))
	for i, p := range ports {
		out[i] = int(p)
	}
	return out
}

// nonNil returns l, or an empty list for nil: a JSON log line then has []
// rather than null.
func nonNil(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
}

// checkOverlap refuses prefixes that overlap those of an interface already
// running in the run directory (the same network namespace): a
// destination must map through one interface, as faithif.conf's check
// says for the interfaces of one file.
func (in *Instance) checkOverlap() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	others, err := control.Statuses(ctx, in.opts.RunDir)
	if err != nil {
		return nil // a run directory that cannot be listed is for Listen to report
	}
	for _, st := range others {
		if st.Name == in.cfg.Name {
			continue // the same name: refused as "already exists" when it is created
		}
		for _, s := range st.Prefixes {
			q, err := netip.ParsePrefix(s)
			if err != nil {
				continue
			}
			for _, p := range in.cfg.Prefixes {
				if p.Overlaps(q) {
					return fmt.Errorf("prefix %s overlaps %s of %s (pid %d): a destination must map through one interface", p, q, st.Name, st.PID)
				}
			}
		}
	}
	return nil
}

// errString returns err's message, "" for nil.
func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// warnings returns what keeps the instance from relaying as an operator
// would expect, in words that say how to fix it: keepfaith 0 (nothing is
// captured), IPv6 forwarding off (only this host's own connections reach
// the interface). show prints them; the log has them at start-up.
func (in *Instance) warnings() []string {
	var ws []string
	if in.stack != nil && !in.stack.Link().Capture() {
		ws = append(ws, "keepfaith is 0: nothing is captured; turn it on with 'faithif sysctl -w net.inet6.ip6.keepfaith=1' (or create --keepfaith)")
	}
	if on, err := faithif.IPv6Forwarding(); err == nil && !on {
		ws = append(ws, fmt.Sprintf("IPv6 forwarding is off (net.ipv6.conf.all.forwarding=0): only this host's own connections reach %s; set it to 1 for clients elsewhere", in.cfg.Name))
	}
	return ws
}

// Ready returns nil while the instance relays: it is running and not
// draining, keepfaith is 1 and the interface is up; else it says why not.
func (in *Instance) Ready() error {
	name := in.cfg.Name
	switch {
	case !in.running.Load():
		return fmt.Errorf("%s is not running", name)
	case in.relay.Draining():
		return fmt.Errorf("%s is draining", name)
	case !in.stack.Link().Capture():
		return fmt.Errorf("%s: keepfaith is 0, nothing is captured", name)
	}
	return in.iface.CheckUp()
}

// SetKeepFaith implements control.Controller.
func (in *Instance) SetKeepFaith(on bool) {
	if in.stack.Link().Capture() != on {
		in.log.Info("keepfaith changed", "interface", in.cfg.Name, "keepfaith", faithif.KeepFaithValue(on))
	}
	in.stack.Link().SetCapture(on)
}
