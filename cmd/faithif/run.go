package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"github.com/faithif/faithif/faithif"
	"github.com/faithif/faithif/faithif/config"
	"github.com/faithif/faithif/faithif/metrics"
)

const runUsage = `usage: faithif run --config FILE [--metrics ADDR] [--check]

Runs the router appliance FILE describes (TOML; the commented example is
deploy/faithif.conf): sets its [sysctl] values and keepfaith, creates every
[[interface]] and installs its routes, then relays in the foreground, logging
to standard error, until SIGTERM or SIGINT. This is the container's command.

The whole file is checked before anything is changed; every error is printed
as FILE:LINE: KEY: problem, and the exit status is 1. If a later step fails
(an interface already there, a route that exists), what was already applied
is undone.

Stopping drains every interface (no new flows; open flows get the
interface's grace to finish, then are reset; a second signal stops at once),
then removes exactly what was applied: routes, interfaces, the keepfaith
value, sysctl values (put back unless changed by someone else since).
SIGHUP rereads every interface's access file. 'faithif show' and the
control sockets work as for 'create'.

Flags:
`

func cmdRun(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("run", runUsage, stderr)
	path := fs.String("config", "", "the configuration file (required), e.g. /etc/faithif/faithif.conf")
	metricsAddr := fs.String("metrics", "", "serve /metrics, /healthz and /readyz on HOST:PORT (overrides the file's metrics key)")
	check := fs.Bool("check", false, "check the configuration, print a summary and exit; change nothing")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	if *path == "" {
		return usagef("--config FILE is required")
	}
	if *metricsAddr != "" {
		if err := config.CheckListenAddr(*metricsAddr); err != nil {
			return usagef("--metrics %v", err)
		}
	}
	cfg, err := config.Load(*path, faithif.IsLocalIPv4)
	if err != nil {
		return reportedError{errors.New(prefixLines("faithif: ", err.Error()))}
	}
	if *metricsAddr != "" {
		cfg.Metrics = *metricsAddr
	}
	if *check {
		printPlan(stdout, cfg)
		return nil
	}
	log, err := newLogger(stderr, cfg.LogFormat, cfg.LogLevel)
	if err != nil {
		return err
	}
	a := &appliance{cfg: cfg, log: log, runDir: faithif.RunDirFromEnv()}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	return a.run(sigs)
}

func prefixLines(prefix, s string) string {
	lines := strings.Split(s, "\n")
	for k := range lines {
		lines[k] = prefix + lines[k]
	}
	return strings.Join(lines, "\n")
}

// printPlan says what run would apply.
func printPlan(w io.Writer, cfg *config.Config) {
	fmt.Fprintf(w, "%s: ok\n", cfg.File)
	if cfg.KeepFaith != nil {
		fmt.Fprintf(w, "  %s=%d\n", faithif.KeepFaithName, b2i(*cfg.KeepFaith))
	}
	for _, s := range cfg.Sysctls {
		fmt.Fprintf(w, "  sysctl %s=%s\n", s.Key, s.Value)
	}
	for _, in := range cfg.Interfaces {
		fmt.Fprintf(w, "  %s: prefixes %v, mtu %d", in.Name, in.Prefixes, in.MTU)
		if in.Rules != "" {
			fmt.Fprintf(w, ", rules %s", in.Rules)
		}
		fmt.Fprintln(w)
		for _, r := range in.Routes {
			fmt.Fprintf(w, "    route %s dev %s\n", r, in.Name)
		}
	}
	if cfg.Metrics != "" {
		fmt.Fprintf(w, "  metrics on %s\n", cfg.Metrics)
	}
}

// appliance is `faithif run`: several instances, the sysctls and keepfaith
// they need, and the metrics server, applied together and undone together.
type appliance struct {
	cfg    *config.Config
	log    *slog.Logger
	runDir faithif.RunDir

	started running // the instances started, in file order
	sysctls faithif.SysctlSet
	keepOld *bool // keepfaith before run set it, to put back
}

// running is the set of instances a metrics server describes.
type running struct {
	mu    sync.Mutex
	list  []*instance
	names []string // every interface configured, started or not
}

func (r *running) add(in *instance) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.list = append(r.list, in)
}

func (r *running) all() []*instance {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.list
}

// Statuses implements metrics.Source.
func (r *running) Statuses() []faithif.Status {
	var out []faithif.Status
	for _, in := range r.all() {
		if in.running.Load() {
			out = append(out, in.Status())
		}
	}
	return out
}

// Ready implements metrics.Source.
func (r *running) Ready() error {
	var errs []error
	ins := r.all()
	if len(ins) == 0 {
		return errors.New("no interface is running")
	}
	started := map[string]bool{}
	for _, in := range ins {
		started[in.cfg.name] = true
	}
	for _, name := range r.names {
		if !started[name] {
			errs = append(errs, fmt.Errorf("%s is not running yet", name))
		}
	}
	for _, in := range ins {
		if err := in.Ready(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// run applies the configuration, serves until a signal or until an
// instance ends, and undoes what it applied.
func (a *appliance) run(sigs <-chan os.Signal) (err error) {
	cfg, log := a.cfg, a.log
	// Everything that can be checked without changing the system.
	src := &a.started
	for _, ic := range cfg.Interfaces {
		src.names = append(src.names, ic.Name)
	}
	var m *metrics.Metrics
	if cfg.Metrics != "" {
		m = metrics.New(src)
	}
	var ins []*instance
	for _, ic := range cfg.Interfaces {
		if err := faithif.CheckCreate(ic.Name); err != nil {
			return err
		}
		icfg := instanceConfig{
			name: ic.Name, prefixes: ic.Prefixes, mtu: ic.MTU, routes: ic.Routes,
			idleTimeout: ic.IdleTimeout, dialTimeout: ic.DialTimeout, grace: ic.Grace,
			rulesPath: ic.Rules, denyWith: ic.DenyWith, limits: ic.Limits, runDir: a.runDir,
		}
		if m != nil {
			icfg.observeDial = m.ObserveDial(ic.Name)
		}
		in, err := newInstance(icfg, log)
		if err != nil {
			return fmt.Errorf("%s: %w", ic.Name, err)
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
	for _, s := range cfg.Sysctls {
		if err := a.sysctls.Set(s.Key, s.Value); err != nil {
			return fmt.Errorf("%s:%d: %w", cfg.File, s.Line, err)
		}
	}
	for _, c := range a.sysctls.Changes() {
		log.Info("sysctl set", "key", c.Key, "value", c.New, "was", c.Old)
	}
	if cfg.KeepFaith != nil {
		old, err := a.runDir.KeepFaith()
		if err != nil {
			return err
		}
		if old != *cfg.KeepFaith {
			if err := setKeepFaithEverywhere(context.Background(), a.runDir, *cfg.KeepFaith); err != nil {
				return err
			}
			a.keepOld = &old
			log.Info("keepfaith set", "value", b2i(*cfg.KeepFaith), "was", b2i(old))
		}
	}

	// Start the instances one by one; the first that fails stops the rest.
	results := make(chan instanceResult, len(ins))
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, in := range ins {
		ready := make(chan struct{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			results <- instanceResult{in, in.run(func() { close(ready) })}
		}()
		select {
		case <-ready:
			src.add(in)
		case r := <-results:
			a.stopAll("startup failed", true)
			return firstErr(r.err, fmt.Errorf("%s stopped while %s was starting", r.in.cfg.name, in.cfg.name))
		}
	}
	log.Info("appliance ready", "config", cfg.File, "interfaces", len(src.all()), "metrics", cfg.Metrics, "pid", os.Getpid())

	// Serve until told to stop or until an instance ends on its own.
	var errs []error
	left := len(src.all())
	stopping := false
	for left > 0 {
		select {
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				for _, in := range a.started.all() {
					if in.cfg.rulesPath != "" {
						in.Reload() // logs its own outcome
					}
				}
				continue
			}
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
				errs = append(errs, fmt.Errorf("%s ended (was it removed?); stopping the others", r.in.cfg.name))
				a.stopAll(r.in.cfg.name+" ended", false)
				stopping = true
			}
		}
	}
	return errors.Join(errs...)
}

type instanceResult struct {
	in  *instance
	err error
}

// stopAll asks every started instance to drain with its grace, or at once.
func (a *appliance) stopAll(why string, now bool) {
	for _, in := range a.started.all() {
		if !in.running.Load() {
			continue // ended already
		}
		g := in.cfg.grace
		if now {
			g = 0
		}
		in.Stop(why, g)
	}
}

// undo puts back keepfaith and the sysctls. Interfaces and routes are
// removed by their instances.
func (a *appliance) undo() {
	if a.keepOld != nil {
		if err := setKeepFaithEverywhere(context.Background(), a.runDir, *a.keepOld); err != nil {
			a.log.Warn("putting back keepfaith", "error", err.Error())
		} else {
			a.log.Info("keepfaith put back", "value", b2i(*a.keepOld))
		}
		a.keepOld = nil
	}
	n := len(a.sysctls.Changes())
	if err := a.sysctls.Restore(); err != nil {
		a.log.Warn("putting back sysctls", "error", err.Error())
	} else if n > 0 {
		a.log.Info("sysctls put back", "count", n)
	}
}
