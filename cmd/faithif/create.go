package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/faithif/faithif/faithif"
	"github.com/faithif/faithif/faithif/config"
	"github.com/faithif/faithif/faithif/instance"
	"github.com/faithif/faithif/faithif/metrics"
	"github.com/faithif/faithif/faithif/status"
	"github.com/faithif/faithif/faithif/systemd"
	"github.com/faithif/faithif/relay"
	"github.com/faithif/faithif/relay/ftp"
)

const createUsage = `usage: faithif create faithN [flags]

Creates the TUN interface faithN (up, MTU 1500 unless --mtu) and relays every
IPv6 TCP flow routed to it to the IPv4 address embedded in its destination
(RFC 6052), once net.inet6.ip6.keepfaith is 1. Route a prefix to it with
  ip -6 route add 64:ff9b::/96 dev faithN
or let --route do it.

Without -f the instance runs in the background; create returns once it is
ready (its log goes to faithN.log in the run directory) or fails with its
error.

Signals: SIGTERM or SIGINT drain (no new flows, open ones get --grace to
finish, then are reset) and remove the interface; a second one stops at once.
SIGHUP rereads the --access file. 'ip link del faithN' also ends the instance.

Access file (--access), faithd.conf syntax, first match wins, no match denies:
  # SRC6[/PLEN]       permit|deny  DST4[/PLEN]      [BIND4]
  2001:db8:1::/48     deny         10.0.0.0/8
  2001:db8:1::/48     permit       0.0.0.0/0        192.0.2.1
A bad line is an error (FILE:LINE: ...) and the whole file is rejected; a
file with no rule denies everything, no --access permits everything.
0/8, 127/8, 169.254/16, 224/4, 240/4, 255.255.255.255 and what the router
delivers locally (its addresses, local routes) are refused whatever it says.

DNS64 (--dns64 LISTEN --dns64-upstream ADDR): answers the clients' DNS
queries, asking ADDR, with AAAA records synthesized in the FAITH prefix for
names that have none, only for IPv4 addresses the relay would accept.

FTP (--ftp-ports, 21 by default): the control connection's EPSV and EPRT are
translated for the IPv4 server, and the data connections relayed.

Flags:
`

// stringList is a repeatable string flag.
type stringList []string

// String implements flag.Value.
func (l *stringList) String() string { return strings.Join(*l, " ") }

// Set implements flag.Value.
func (l *stringList) Set(s string) error {
	*l = append(*l, s)
	return nil
}

func cmdCreate(args []string, stdout, stderr io.Writer) (err error) {
	if inBackground() {
		// A background instance reports a startup error to the command
		// that started it, not to the log it may share.
		// (notifyReady clears inBackground once the instance is ready.)
		defer func() {
			if err != nil && inBackground() {
				notifyFailed(fmt.Errorf("faithif: %w", err))
				err = silentError{err}
			}
		}()
	}
	fs := newFlagSet("create", createUsage, stderr)
	var prefixes stringList
	fs.Var(&prefixes, "prefix", "FAITH prefix, RFC 6052 length /32../96 (repeatable; default 64:ff9b::/96)")
	mtu := fs.Int("mtu", faithif.DefaultMTU, "interface MTU")
	keep := fs.Bool("keepfaith", false, "set net.inet6.ip6.keepfaith=1 (for the network namespace) when starting")
	var fg bool
	fs.BoolVar(&fg, "f", false, "stay in the foreground (short for --foreground)")
	fs.BoolVar(&fg, "foreground", false, "stay in the foreground")
	rulesPath := fs.String("access", "", "faithd.conf access file: SRC6[/PLEN] permit|deny DST4[/PLEN] [BIND4] (default: none, permit all)")
	routes := fs.Bool("route", false, "install 'PREFIX dev faithN' for every prefix, removed again on destroy")
	denyWith := fs.String("deny-with", "icmp6", "answer to a denied flow: icmp6 (administratively prohibited, the client sees EACCES) or rst (ECONNREFUSED)")
	maxFlows := fs.Int("max-flows-per-client", relay.DefaultMaxFlowsPerClient, "flows one client /64 may have open or being set up")
	maxHandshakes := fs.Int("max-handshakes-per-client", relay.DefaultMaxHandshakesPerClient, "flows one client /64 may have being set up")
	maxFlowsAddr := fs.Int("max-flows-per-address", relay.DefaultMaxFlowsPerAddress, "flows one client address may have open or being set up")
	maxHandshakesAddr := fs.Int("max-handshakes-per-address", relay.DefaultMaxHandshakesPerAddress, "flows one client address may have being set up")
	maxHandshakesAll := fs.Int("max-handshakes", relay.DefaultMaxHandshakes, "flows all clients may have being set up; while fewer than a quarter are half-open, flows dial before completing the client's handshake")
	grace := fs.String("grace", config.DefaultGrace.String(), "on SIGTERM, let open flows finish this long (a `duration`) before resetting them")
	idle := fs.String("idle-timeout", relay.DefaultIdleTimeout.String(), "close flows idle in both directions this long (a `duration`; 0: never)")
	dial := fs.String("dial-timeout", relay.DefaultDialTimeout.String(), "give up on an IPv4 connection after this long (a `duration`)")
	privPorts := fs.String("privileged-ports", "", "the destination `PORTS` (PORT[,PORT...], e.g. 513,514) whose IPv4 connections come from a reserved source port, 600-1023, as rresvport binds (faithd -p); default none")
	proxyPorts := fs.String("proxy-protocol-ports", "", "the destination `PORTS` (PORT[,PORT...], e.g. 25,80) whose IPv4 connections start with a PROXY protocol v2 header naming the IPv6 client; default none")
	ftpPorts := fs.String("ftp-ports", strconv.Itoa(ftp.DefaultPort), "destination ports whose flows the FTP relay carries (EPSV/EPRT translated for the IPv4 server), comma-separated, e.g. 21,2121; none: no FTP relay")
	metricsAddr := fs.String("metrics", "", "serve Prometheus /metrics, /healthz and /readyz on HOST:PORT, e.g. 127.0.0.1:9464; off by default")
	pprofAddr := fs.String("pprof", "", "serve Go profiles (net/http/pprof) on this address, e.g. 127.0.0.1:6060; off by default")
	logFormat := fs.String("log-format", config.DefaultLogFormat, "log format: text or json")
	logLevel := fs.String("log-level", config.DefaultLogLevel, "log level: debug, info, warn or error")
	d64 := addDNS64Flags(fs)
	name, err := parseWithName(fs, args, true)
	if err != nil {
		return err
	}
	if len(prefixes) == 0 {
		prefixes = stringList{relay.WellKnownPrefix.String()}
	}
	cfg, err := config.FromFlags(&config.Settings{
		Metrics: *metricsAddr, LogFormat: *logFormat, LogLevel: *logLevel,
		Interface: []config.InterfaceSettings{{
			Name: name, Prefixes: prefixes, MTU: mtu, AccessFile: *rulesPath, DenyWith: *denyWith,
			IdleTimeout: idle, DialTimeout: dial, Grace: grace,
			MaxFlowsPerClient: maxFlows, MaxHandshakesPerClient: maxHandshakes, MaxFlowsPerAddress: maxFlowsAddr,
			MaxHandshakesPerAddress: maxHandshakesAddr, MaxHandshakes: maxHandshakesAll,
			DNS64:               d64.settings(),
			PrivilegedPortsFlag: privPorts, ProxyProtocolPortsFlag: proxyPorts,
			FTPPortsFlag: ftpPorts,
		}},
	}, faithif.IsLocalIPv4)
	if err != nil {
		return flagsError(err)
	}
	ic := cfg.Interfaces[0]
	if *routes {
		ic.Routes = faithif.PrefixRoutes(ic.Prefixes)
	}
	if !fg {
		return daemonize(name, args, stdout, stderr)
	}
	runDir, err := faithif.RunDirFromEnv()
	if err != nil {
		return fmt.Errorf("create %s: %w", name, err)
	}
	if inBackground() {
		logw, lerr := backgroundLog(runDir, name)
		if lerr != nil {
			return lerr
		}
		defer logw.Close()
		defer func() { err = logFinalError(logw, err) }()
		stderr = logw
	}
	log := newLogger(stderr, cfg.LogFormat, cfg.LogLevel)
	notify := systemd.NewNotifier(log)
	set := instance.NewSet(name)
	opts := instance.Options{RunDir: runDir, Owner: status.OwnerCreate, KeepFaith: *keep, Logger: log, Notifier: notify}
	var m *metrics.Metrics
	if cfg.Metrics != "" {
		m = metrics.New(set)
		opts.ObserveDial = m.ObserveDial(name)
		opts.ObserveUpstream = m.ObserveUpstream(name)
	}
	in, err := instance.New(ic, opts)
	if err != nil {
		return err
	}
	set.Add(in)
	if m != nil {
		srv, err := m.Listen(cfg.Metrics, log)
		if err != nil {
			return err
		}
		defer srv.Close()
	}
	if *pprofAddr != "" {
		stop, err := servePprof(*pprofAddr, log)
		if err != nil {
			return err
		}
		defer stop()
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	go func() {
		for sig := range sigs {
			if sig == syscall.SIGHUP {
				in.Reload("") // logs its own outcome
				continue
			}
			in.Stop(sig.String(), in.Grace())
		}
	}()
	return in.Run(func() { notifyReady(notify, readyStatus(in.Status())) })
}

// flagsError turns the errors config.FromFlags found into the command's: a
// usage error (exit 2), unless a problem is inside the access file --access
// names (exit 1, as for a bad faithif.conf).
func flagsError(err error) error {
	msg := prefixLines("faithif: ", err.Error())
	if config.InFile(err) {
		return reportedError{errors.New(msg)}
	}
	return usageError{strings.TrimPrefix(msg, "faithif: ")}
}
