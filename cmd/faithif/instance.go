package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sync"
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
	runDir      faithif.RunDir
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

	cancel context.CancelCauseFunc
}

// errDestroyed ends an instance that was asked to go away.
var errDestroyed = errors.New("destroyed")

// runInstance creates the interface and serves it until ctx ends, the
// interface is destroyed or removed, or reading fails. ready is called once
// packets are being read.
func runInstance(ctx context.Context, cfg instanceConfig, log *slog.Logger, ready func()) error {
	mapper, err := relay.NewMapper(cfg.prefixes...)
	if err != nil {
		return err
	}
	keep, err := cfg.runDir.KeepFaith()
	if err != nil {
		return err
	}
	if cfg.keepFaith && !keep {
		if err := setKeepFaithEverywhere(ctx, cfg.runDir, true); err != nil {
			return err
		}
		keep = true
	}

	iface, err := faithif.Create(cfg.name, cfg.mtu)
	if err != nil {
		return err
	}
	defer iface.Close()

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	in := &instance{cfg: cfg, log: log, iface: iface, mapper: mapper, started: time.Now(), cancel: cancel}
	in.relay = relay.New(relay.Config{Mapper: mapper, DialTimeout: cfg.dialTimeout, IdleTimeout: cfg.idleTimeout, Logger: log})

	// Flows run under their own context, so that stopping can reset them
	// while the TUN is still there to carry the RSTs.
	flowCtx, cancelFlows := context.WithCancel(context.Background())
	defer cancelFlows()
	var flows flowTracker
	in.stack, err = stack.New(iface.Device(), func(r *stack.Request) {
		if !flows.begin() {
			r.Refuse(stack.RefuseReset)
			return
		}
		defer flows.end()
		in.relay.Handle(flowCtx, flowRequest{r})
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

	// Stopping: reset open flows, give their RSTs a moment to leave, then
	// close the TUN, which ends Run.
	runDone := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
		case <-runDone:
			return
		}
		log.Info("stopping", "interface", cfg.name, "why", context.Cause(ctx).Error(), "flows_open", in.relay.Stats().FlowsOpen.Load())
		cancelFlows()
		flows.wait(2 * time.Second)
		iface.Close()
	}()
	runErr := in.stack.Run(func() {
		log.Info("ready", "interface", cfg.name, "prefixes", fmt.Sprint(mapper.Prefixes()), "mtu", cfg.mtu,
			"keepfaith", b2i(keep), "control", cfg.runDir.SocketPath(cfg.name), "pid", os.Getpid())
		if ready != nil {
			ready()
		}
	})
	close(runDone)
	if ctx.Err() == nil {
		log.Info("stopping", "interface", cfg.name, "why", fmt.Sprint(firstErr(runErr, fmt.Errorf("%s was removed", cfg.name))))
	}
	cancelFlows()
	in.control.Close()
	in.stack.Close()
	flows.closeAndWait()
	if runErr != nil {
		return fmt.Errorf("%s: %w", cfg.name, runErr)
	}
	log.Info("stopped", "interface", cfg.name)
	return nil
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

// wait waits up to timeout for the running handlers to finish.
func (f *flowTracker) wait(timeout time.Duration) {
	f.mu.Lock()
	if f.n == 0 {
		f.mu.Unlock()
		return
	}
	if f.zero == nil {
		f.zero = make(chan struct{})
	}
	ch := f.zero
	f.mu.Unlock()
	select {
	case <-ch:
	case <-time.After(timeout):
	}
}

// closeAndWait admits no new handlers and waits for the running ones.
func (f *flowTracker) closeAndWait() {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	f.wait(time.Duration(1<<63 - 1))
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

// Status implements faithif.Controller.
func (in *instance) Status() faithif.Status {
	rs, ls := in.relay.Stats(), in.stack.Link().Stats()
	var prefixes []string
	for _, p := range in.mapper.Prefixes() {
		prefixes = append(prefixes, p.String())
	}
	return faithif.Status{
		Name:               in.cfg.name,
		PID:                os.Getpid(),
		Prefixes:           prefixes,
		MTU:                in.iface.MTU(),
		KeepFaith:          in.stack.Link().Capture(),
		UptimeSeconds:      time.Since(in.started).Seconds(),
		FlowsOpen:          rs.FlowsOpen.Load(),
		FlowsTotal:         rs.FlowsTotal.Load(),
		FlowsAccepted:      rs.FlowsAccepted.Load(),
		FlowsRefused:       rs.FlowsRefused.Load(),
		FlowsDenied:        rs.FlowsDenied.Load(),
		HandshakesInFlight: in.stack.Stats().InFlight.Load(),
		BytesIn:            rs.BytesIn.Load(),
		BytesOut:           rs.BytesOut.Load(),
		PacketsIn:          ls.PacketsIn.Load(),
		PacketsOut:         ls.PacketsOut.Load(),
		PacketsDiscarded:   ls.DiscardedByReason(),
	}
}

// SetKeepFaith implements faithif.Controller.
func (in *instance) SetKeepFaith(on bool) {
	if in.stack.Link().Capture() != on {
		in.log.Info("keepfaith changed", "interface", in.cfg.name, "keepfaith", b2i(on))
	}
	in.stack.Link().SetCapture(on)
}

// Destroy implements faithif.Controller.
func (in *instance) Destroy() { in.cancel(errDestroyed) }

// flowRequest adapts a stack.Request to relay.Request.
type flowRequest struct{ r *stack.Request }

func (f flowRequest) Client() netip.AddrPort { return f.r.Client }
func (f flowRequest) Dest() netip.AddrPort   { return f.r.Dest }
func (f flowRequest) Refuse(relay.Refusal)   { f.r.Refuse(stack.RefuseReset) }
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
