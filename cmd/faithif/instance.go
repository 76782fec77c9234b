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

	var flows sync.WaitGroup
	in.stack, err = stack.New(iface.Device(), func(r *stack.Request) {
		flows.Add(1)
		defer flows.Done()
		in.relay.Handle(ctx, flowRequest{r})
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

	runErr := in.stack.Run(ctx, func() {
		log.Info("ready", "interface", cfg.name, "prefixes", fmt.Sprint(mapper.Prefixes()), "mtu", cfg.mtu,
			"keepfaith", b2i(keep), "control", cfg.runDir.SocketPath(cfg.name), "pid", os.Getpid())
		if ready != nil {
			ready()
		}
	})
	cause := context.Cause(ctx)
	switch {
	case runErr != nil:
	case cause == nil:
		cause = fmt.Errorf("%s was removed", cfg.name)
	}
	log.Info("stopping", "interface", cfg.name, "why", fmt.Sprint(firstErr(runErr, cause)), "flows_open", in.relay.Stats().FlowsOpen.Load())
	cancel(cause) // resets open flows
	in.control.Close()
	in.stack.Close()
	flows.Wait()
	if runErr != nil {
		return fmt.Errorf("%s: %w", cfg.name, runErr)
	}
	return nil
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
