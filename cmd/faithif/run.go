package main

import (
	"errors"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/faithif/faithif/faithif"
	"github.com/faithif/faithif/faithif/appliance"
	"github.com/faithif/faithif/faithif/config"
	"github.com/faithif/faithif/faithif/systemd"
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
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	if *path == "" {
		return usagef("--config FILE is required")
	}
	if *metricsAddr != "" {
		if err := config.CheckListenAddr(*metricsAddr); err != nil {
			return usagef("--metrics: %v", err)
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
		return cfg.WritePlan(stdout)
	}
	runDir, err := faithif.RunDirFromEnv()
	if err != nil {
		return err
	}
	log := newLogger(stderr, cfg.LogFormat, cfg.LogLevel)
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	return appliance.New(cfg, runDir, log, systemd.NewNotifier(log)).Run(sigs)
}

func prefixLines(prefix, s string) string {
	lines := strings.Split(s, "\n")
	for k := range lines {
		lines[k] = prefix + lines[k]
	}
	return strings.Join(lines, "\n")
}
