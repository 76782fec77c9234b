package appliance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/faithif/faithif/faithif"
	"github.com/faithif/faithif/faithif/config"
	"github.com/faithif/faithif/faithif/control"
	"github.com/faithif/faithif/faithif/instance"
	"github.com/faithif/faithif/faithif/metrics"
	"github.com/faithif/faithif/faithif/status"
	"github.com/faithif/faithif/faithif/systemd"
)

// Appliance is a checked faithif.conf, ready to be run.
type Appliance struct {
	cfg    *config.Config
	log    *slog.Logger
	runDir faithif.RunDir
	notify *systemd.Notifier

	started *instance.Set // the instances started, in file order
	sysctls faithif.SysctlSet
	// ready is set once every interface started: from then on a stop keeps
	// the sysctls if the configuration says so (a failed start never does).
	ready   bool
	keepOld *bool // keepfaith before Run set it, to put back
}

// New returns the appliance cfg describes, keeping its control sockets
// and keepfaith value in runDir. notify, if not nil, is told when the
// appliance is ready, reloads and stops.
func New(cfg *config.Config, runDir faithif.RunDir, log *slog.Logger, notify *systemd.Notifier) *Appliance {
	var names []string
	for _, ic := range cfg.Interfaces {
		names = append(names, ic.Name)
	}
	return &Appliance{cfg: cfg, log: log, runDir: runDir, notify: notify, started: instance.NewSet(names...)}
}

// Run applies the configuration, serves until a signal on sigs (SIGHUP
// rereads every access file, anything else stops) or until an instance ends
// on its own, and undoes what it applied.
func (a *Appliance) Run(sigs <-chan os.Signal) (err error) {
	cfg, log := a.cfg, a.log
	// Everything that can be checked without changing the system.
	var m *metrics.Metrics
	if cfg.Metrics != "" {
		m = metrics.New(a.started)
	}
	var ins []*instance.Instance
	for _, ic := range cfg.Interfaces {
		if err := faithif.CheckCreate(ic.Name); err != nil {
			return err
		}
		opts := instance.Options{RunDir: a.runDir, Owner: status.OwnerRun, Logger: log, Notifier: a.notify}
		if m != nil {
			opts.ObserveDial = m.ObserveDial(ic.Name)
			opts.ObserveUpstream = m.ObserveUpstream(ic.Name)
		}
		in, err := instance.New(ic, opts)
		if err != nil {
			return err
		}
		ins = append(ins, in)
	}
	if m != nil {
		srv, err := m.Listen(cfg.Metrics, log)
		if err != nil {
			return err
		}
		defer srv.Close()
	}

	// From here on, every change is undone on the way out.
	defer a.undo()
	if err := a.apply(); err != nil {
		return err
	}

	// Start the instances one by one; the first that fails stops the rest.
	results := make(chan result, len(ins))
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, in := range ins {
		ready := make(chan struct{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			results <- result{in, in.Run(func() { close(ready) })}
		}()
		select {
		case <-ready:
			a.started.Add(in)
		case r := <-results:
			a.stopAll("startup failed", true)
			if r.err != nil {
				return r.err
			}
			return fmt.Errorf("%s stopped while %s was starting", r.in.Name(), in.Name())
		}
	}
	a.ready = true
	log.Info("appliance ready", "config", cfg.File, "interfaces", len(a.started.All()), "metrics", cfg.Metrics, "pid", os.Getpid())
	a.notify.Ready(a.readyStatus())
	return a.serve(sigs, results)
}

// readyStatus is the appliance's STATUS= once it is ready: its interfaces,
// and what keeps them from relaying as expected, if anything (each warning
// once).
func (a *Appliance) readyStatus() string {
	var names, warnings []string
	for _, in := range a.started.All() {
		names = append(names, in.Name())
		for _, w := range in.Status().Warnings {
			if !slices.Contains(warnings, w) {
				warnings = append(warnings, w)
			}
		}
	}
	return strings.Join(append([]string{"up: " + strings.Join(names, ", ")}, warnings...), "; ")
}

// result is how an instance's Run ended.
type result struct {
	in  *instance.Instance
	err error
}

// apply sets the sysctls and keepfaith the configuration asks for.
func (a *Appliance) apply() error {
	cfg, log := a.cfg, a.log
	for _, s := range cfg.Sysctls {
		if err := a.sysctls.Set(s.Key, s.Value); err != nil {
			return fmt.Errorf("%s:%d: %w", cfg.File, s.Line, err)
		}
	}
	for _, c := range a.sysctls.Changes() {
		log.Info("sysctl set", "key", c.Key, "value", c.New, "was", c.Old)
	}
	if cfg.KeepFaith == nil {
		return nil
	}
	old, err := a.runDir.KeepFaith()
	if err != nil {
		return err
	}
	if old == *cfg.KeepFaith {
		return nil
	}
	if err := control.SetKeepFaith(context.Background(), a.runDir, *cfg.KeepFaith); err != nil {
		return err
	}
	a.keepOld = &old
	log.Info("keepfaith set", "value", faithif.KeepFaithValue(*cfg.KeepFaith), "was", faithif.KeepFaithValue(old))
	return nil
}

// serve waits until told to stop or until an instance ends on its own,
// then until every instance has ended.
func (a *Appliance) serve(sigs <-chan os.Signal, results <-chan result) error {
	var errs []error
	left := len(a.started.All())
	stopping := false
	for left > 0 {
		select {
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				a.reload()
				continue
			}
			a.notify.Stopping("stopping: " + sig.String())
			a.stopAll(sig.String(), false)
			stopping = true
		case r := <-results:
			left--
			if r.err != nil {
				errs = append(errs, r.err)
			}
			if !stopping {
				// An interface removed under us: an appliance is all or
				// nothing, so that its supervisor restarts it whole.
				errs = append(errs, fmt.Errorf("%s ended (was it removed?); stopping the others", r.in.Name()))
				a.notify.Stopping(r.in.Name() + " ended; stopping")
				a.stopAll(r.in.Name()+" ended", false)
				stopping = true
			}
		}
	}
	return errors.Join(errs...)
}

// reload rereads every interface's access file (SIGHUP), announced to the
// service manager as one reload.
func (a *Appliance) reload() {
	a.notify.Reloading("reloading the access files")
	var failed []string
	for _, in := range a.started.All() {
		if in.RulesFile() == "" {
			continue
		}
		if err := in.Reload(""); err != nil { // logs its own outcome
			failed = append(failed, in.Name())
		}
	}
	if len(failed) > 0 {
		a.notify.Reloaded("reload failed for " + strings.Join(failed, ", ") + ", the old rules stay")
		return
	}
	a.notify.Reloaded("access files reloaded")
}

// stopAll asks every started instance to drain with its grace, or at once.
func (a *Appliance) stopAll(why string, now bool) {
	for _, in := range a.started.All() {
		if !in.Running() {
			continue // ended already
		}
		g := in.Grace()
		if now {
			g = 0
		}
		in.Stop(why, g)
	}
}

// undo puts back keepfaith and the sysctls. Interfaces and routes are
// removed by their instances.
func (a *Appliance) undo() {
	if a.keepOld != nil {
		if err := control.SetKeepFaith(context.Background(), a.runDir, *a.keepOld); err != nil {
			a.log.Warn("putting back keepfaith", "error", err.Error())
		} else {
			a.log.Info("keepfaith put back", "value", faithif.KeepFaithValue(*a.keepOld))
		}
		a.keepOld = nil
	}
	n := len(a.sysctls.Changes())
	if a.cfg.KeepSysctls && a.ready {
		if n > 0 {
			a.log.Info("sysctls kept", "count", n, "why", "sysctl_on_stop = keep")
		}
		return
	}
	if err := a.sysctls.Restore(); err != nil {
		a.log.Warn("putting back sysctls", "error", err.Error())
	} else if n > 0 {
		a.log.Info("sysctls put back", "count", n)
	}
}
