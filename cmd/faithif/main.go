// Command faithif creates and manages faith(4)-style interfaces on Linux:
// IPv6 TCP flows routed to faithN are terminated in userspace and relayed to
// the IPv4 address embedded in their destination.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/faithif/faithif/faithif"
	"github.com/faithif/faithif/faithif/config"
	"github.com/faithif/faithif/faithif/metrics"
	"github.com/faithif/faithif/relay"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// silentError has been reported elsewhere; it only sets the exit status.
type silentError struct{ error }

// usageError is an error in the command line: exit status 2.
type usageError struct{ msg string }

// Error implements error.
func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return usageError{fmt.Sprintf(format, args...)}
}

const mainUsage = `usage: faithif <command> [arguments]

Commands:
  create faithN [flags]     create the interface and relay what is routed to it
  run --config FILE         the router appliance: every interface, route and
                            sysctl in FILE, in the foreground (containers)
  destroy faithN [--grace D] drain open flows, stop the instance, remove the interface
  reload faithN             reread the access file (as SIGHUP does)
  rules test [faithN] SRC6 [DST6]:PORT
                            which access rule decides a flow, and why
  show [faithN] [--json]    state and counters of running instances
  list [--json]             the same as show, for every instance
  sysctl [-w] net.inet6.ip6.keepfaith[=0|1]
                            read or set the capture switch (global, default 0)

Run 'faithif <command> --help' for a command's flags.
Environment: FAITHIF_RUN_DIR (default /run/faithif) holds control sockets
and the keepfaith value.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, mainUsage)
		return exitUsage
	}
	var err error
	switch args[0] {
	case "create":
		err = cmdCreate(args[1:], stdout, stderr)
	case "destroy":
		err = cmdDestroy(args[1:], stdout, stderr)
	case "show", "list":
		err = cmdShow(args[0], args[1:], stdout, stderr)
	case "sysctl":
		err = cmdSysctl(args[1:], stdout, stderr)
	case "reload":
		err = cmdReload(args[1:], stdout, stderr)
	case "run":
		err = cmdRun(args[1:], stdout, stderr)
	case "rules":
		err = cmdRules(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, mainUsage)
		return exitOK
	default:
		err = usagef("unknown command %q", args[0])
	}
	var ue usageError
	var se silentError
	var re reportedError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &se):
		return exitError
	case errors.As(err, &re):
		fmt.Fprintln(stderr, err)
		return exitError
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "faithif: %s\n", err)
		fmt.Fprintf(stderr, "Run 'faithif %s --help' for usage.\n", firstWord(args))
		return exitUsage
	default:
		fmt.Fprintf(stderr, "faithif: %s\n", err)
		return exitError
	}
}

func firstWord(args []string) string {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return ""
	}
	return args[0]
}

// newFlagSet returns a flag set that reports errors instead of exiting.
func newFlagSet(name, usage string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	return fs
}

// parseWithName parses flags that may come before or after one positional
// interface name. required says whether the name must be there.
func parseWithName(fs *flag.FlagSet, args []string, required bool) (string, error) {
	var name string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return "", err
		}
		return "", usageError{err.Error()}
	}
	rest := fs.Args()
	if name == "" && len(rest) > 0 {
		name, rest = rest[0], rest[1:]
	}
	if len(rest) > 0 {
		return "", usagef("unexpected argument %q", rest[0])
	}
	if name == "" && required {
		return "", usagef("missing interface name (e.g. faith0)")
	}
	if name != "" {
		if err := faithif.ValidateName(name); err != nil {
			return "", usageError{err.Error()}
		}
	}
	return name, nil
}

// prefixList is a repeatable --prefix flag.
type prefixList []netip.Prefix

// String implements flag.Value.
func (p *prefixList) String() string { return fmt.Sprint(*p) }

// Set implements flag.Value: it parses and checks one more prefix.
func (p *prefixList) Set(s string) error {
	pfx, err := relay.ParsePrefix(s)
	if err != nil {
		return err
	}
	for _, q := range *p {
		if q.Overlaps(pfx) {
			return fmt.Errorf("prefix %s overlaps %s", pfx, q)
		}
	}
	*p = append(*p, pfx)
	return nil
}

const createUsage = `usage: faithif create faithN [flags]

Creates the TUN interface faithN (up, MTU 1500 unless --mtu) and relays every
IPv6 TCP flow routed to it to the IPv4 address embedded in its destination
(RFC 6052), once net.inet6.ip6.keepfaith is 1. Route a prefix to it with
  ip -6 route add 64:ff9b::/96 dev faithN
or let --route do it.

Without -f the instance runs in the background; create returns once it is
ready (its log goes to $FAITHIF_RUN_DIR/faithN.log) or fails with its error.

Signals: SIGTERM or SIGINT drain (no new flows, open ones get --grace to
finish, then are reset) and remove the interface; a second one stops at once.
SIGHUP rereads the --config file. 'ip link del faithN' also ends the instance.

Access file (--config), faithd.conf syntax, first match wins, no match denies:
  # SRC6[/PLEN]       permit|deny  DST4[/PLEN]      [BIND4]
  2001:db8:1::/48     deny         10.0.0.0/8
  2001:db8:1::/48     permit       0.0.0.0/0        192.0.2.1
A bad line is an error (FILE:LINE: ...) and the whole file is rejected.
0/8, 127/8, 224/4, 240/4 and 255.255.255.255 are refused whatever it says.

Flags:
`

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
	var prefixes prefixList
	fs.Var(&prefixes, "prefix", "FAITH prefix, RFC 6052 length /32../96 (repeatable; default 64:ff9b::/96)")
	mtu := fs.Int("mtu", faithif.DefaultMTU, "interface MTU")
	keep := fs.Bool("keepfaith", false, "set net.inet6.ip6.keepfaith=1 (global) when starting")
	var fg bool
	fs.BoolVar(&fg, "f", false, "stay in the foreground (short for --foreground)")
	fs.BoolVar(&fg, "foreground", false, "stay in the foreground")
	rulesPath := fs.String("config", "", "faithd.conf access file: SRC6[/PLEN] permit|deny DST4[/PLEN] [BIND4] (default: permit all)")
	routes := fs.Bool("route", false, "install 'PREFIX dev faithN' for every prefix, removed again on destroy")
	denyWith := fs.String("deny-with", "icmp6", "answer to a denied flow: icmp6 (administratively prohibited, the client sees EACCES) or rst (ECONNREFUSED)")
	maxFlows := fs.Int("max-flows-per-client", relay.DefaultMaxFlowsPerClient, "flows one client /64 may have open or being set up")
	maxHandshakes := fs.Int("max-handshakes-per-client", relay.DefaultMaxHandshakesPerClient, "flows one client /64 may have waiting for their IPv4 connection")
	grace := fs.Duration("grace", config.DefaultGrace, "on SIGTERM, let open flows finish this long before resetting them")
	idle := fs.Duration("idle-timeout", relay.DefaultIdleTimeout, "close flows idle in both directions this long (0: never)")
	dial := fs.Duration("dial-timeout", relay.DefaultDialTimeout, "give up on an IPv4 connection after this long")
	metricsAddr := fs.String("metrics", "", "serve Prometheus /metrics, /healthz and /readyz on HOST:PORT, e.g. 127.0.0.1:9464; off by default")
	pprofAddr := fs.String("pprof", "", "serve Go profiles (net/http/pprof) on this address, e.g. 127.0.0.1:6060; off by default")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	name, err := parseWithName(fs, args, true)
	if err != nil {
		return err
	}
	if err := faithif.ValidateMTU(*mtu); err != nil {
		return usageError{err.Error()}
	}
	if *dial <= 0 {
		return usagef("--dial-timeout %s: must be positive", *dial)
	}
	if *idle < 0 {
		return usagef("--idle-timeout %s: must not be negative", *idle)
	}
	if *grace < 0 {
		return usagef("--grace %s: must not be negative", *grace)
	}
	if *idle == 0 {
		*idle = -1 // relay: never
	}
	if *metricsAddr != "" {
		if err := config.CheckListenAddr(*metricsAddr); err != nil {
			return usagef("--metrics %v", err)
		}
	}
	if *maxFlows < 1 || *maxHandshakes < 1 {
		return usagef("--max-flows-per-client and --max-handshakes-per-client must be at least 1")
	}
	deny, err := config.ParseDenyWith(*denyWith)
	if err != nil {
		return usagef("--deny-with %v", err)
	}
	log, err := newLogger(stderr, *logFormat, *logLevel)
	if err != nil {
		return err
	}
	if !fg {
		return daemonize(name, args, stdout, stderr)
	}

	cfg := instanceConfig{
		name: name, prefixes: prefixes, mtu: *mtu, keepFaith: *keep,
		idleTimeout: *idle, dialTimeout: *dial, grace: *grace,
		rulesPath: *rulesPath, denyWith: deny, runDir: faithif.RunDirFromEnv(),
		limits: relay.Limits{MaxFlows: *maxFlows, MaxHandshakes: *maxHandshakes},
	}
	if *routes {
		routed := prefixes
		if len(routed) == 0 {
			routed = []netip.Prefix{relay.WellKnownPrefix}
		}
		cfg.routes = faithif.PrefixRoutes(routed)
	}
	var m *metrics.Metrics
	src := &running{}
	if *metricsAddr != "" {
		m = metrics.New(src)
		cfg.observeDial = m.ObserveDial(name)
	}
	in, err := newInstance(cfg, log)
	if err != nil {
		return err
	}
	if m != nil {
		src.add(in)
		srv, err := m.Listen(*metricsAddr, log)
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
				in.Reload() // logs its own outcome
				continue
			}
			in.Stop(sig.String(), cfg.grace)
		}
	}()
	return in.run(notifyReady)
}

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, usagef("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, usagef("--log-format %q: want text or json", format)
}

const destroyUsage = `usage: faithif destroy faithN [--grace D]

Drains the instance serving faithN (no new flows; open flows get the grace
period to finish, then are reset), removes its routes and the interface,
and waits for it to exit. 'ip link del faithN' and SIGTERM do the same.

Flags:
`

func cmdDestroy(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("destroy", destroyUsage, stderr)
	grace := fs.Duration("grace", config.DefaultGrace, "let open flows finish this long before resetting them")
	name, err := parseWithName(fs, args, true)
	if err != nil {
		return err
	}
	if *grace < 0 {
		return usagef("--grace %s: must not be negative", *grace)
	}
	runDir := faithif.RunDirFromEnv()
	ctx, cancel := context.WithTimeout(context.Background(), *grace+10*time.Second)
	defer cancel()
	g := *grace
	if g == 0 {
		g = time.Nanosecond // zero means "the instance's default" on the wire
	}
	st, err := faithif.Client{Path: runDir.SocketPath(name)}.Destroy(ctx, g)
	if err != nil {
		return fmt.Errorf("destroy %s: %w", name, err)
	}
	if st.FlowsOpen > 0 {
		fmt.Fprintf(stdout, "%s: draining %d open flows (up to %s)\n", name, st.FlowsOpen, *grace)
	}
	// Wait for the instance to be gone: its socket disappears last.
	for ctx.Err() == nil {
		if _, err := os.Stat(runDir.SocketPath(name)); errors.Is(err, os.ErrNotExist) {
			fmt.Fprintf(stdout, "%s destroyed (pid %d)\n", name, st.PID)
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("destroy %s: pid %d did not exit within %s", name, st.PID, *grace+10*time.Second)
}

const reloadUsage = `usage: faithif reload faithN

Rereads the access file given to create --config (as SIGHUP does). Open
flows keep running; new flows see the new rules. A file with errors is
rejected whole and the old rules stay.
`

func cmdReload(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("reload", reloadUsage, stderr)
	name, err := parseWithName(fs, args, true)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := faithif.Client{Path: faithif.RunDirFromEnv().SocketPath(name)}.Reload(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: %d %s from %s\n", name, st.RuleCount, plural(st.RuleCount, "rule", "rules"), st.Rules)
	return nil
}

const showUsage = `usage: faithif show [faithN] [--json]

Prints the state and counters of one running instance, or of all of them.
`

func cmdShow(cmd string, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet(cmd, showUsage, stderr)
	asJSON := fs.Bool("json", false, "print JSON")
	name, err := parseWithName(fs, args, false)
	if err != nil {
		return err
	}
	runDir := faithif.RunDirFromEnv()
	names := []string{name}
	if name == "" {
		if names, err = runDir.Instances(); err != nil {
			return err
		}
	}
	var all []*faithif.Status
	for _, n := range names {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := faithif.Client{Path: runDir.SocketPath(n)}.Status(ctx)
		cancel()
		if err != nil {
			if name == "" && errors.Is(err, faithif.ErrNotRunning) {
				continue // a stale socket of a crashed instance
			}
			return fmt.Errorf("show %s: %w", n, err)
		}
		all = append(all, st)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if name != "" {
			return enc.Encode(all[0])
		}
		if all == nil {
			all = []*faithif.Status{}
		}
		return enc.Encode(all)
	}
	if len(all) == 0 {
		fmt.Fprintln(stdout, "no faith interfaces are running")
	}
	for _, st := range all {
		printStatus(stdout, st)
	}
	return nil
}

func printStatus(w io.Writer, st *faithif.Status) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "%s:\tpid %d, up %s\n", st.Name, st.PID, (time.Duration(st.UptimeSeconds) * time.Second).String())
	fmt.Fprintf(tw, "  prefixes\t%s\n", strings.Join(st.Prefixes, " "))
	fmt.Fprintf(tw, "  mtu\t%d\n", st.MTU)
	fmt.Fprintf(tw, "  keepfaith\t%d\n", b2i(st.KeepFaith))
	fmt.Fprintf(tw, "  flows\topen %d, total %d, accepted %d, refused %d, denied %d, limited %d, handshakes %d\n",
		st.FlowsOpen, st.FlowsTotal, st.FlowsAccepted, st.FlowsRefused, st.FlowsDenied, st.FlowsLimited, st.HandshakesInFlight)
	fmt.Fprintf(tw, "  outcomes\t%s\n", joinCounts(st.FlowOutcomes))
	fmt.Fprintf(tw, "  ended\t%s\n", joinCounts(st.FlowEnds))
	fmt.Fprintf(tw, "  clients\t%d (limits per /64: %d flows, %d handshakes)\n", st.Clients, st.MaxFlowsPerClient, st.MaxHandshakesPer)
	fmt.Fprintf(tw, "  fd limit\t%d (flows refused for lack of fds: %d)\n", st.FDLimit, st.FlowsFDLimit)
	fmt.Fprintf(tw, "  bytes\tclient->server %d, server->client %d\n", st.BytesIn, st.BytesOut)
	d := []string{joinCounts(st.PacketsDiscarded)}
	fmt.Fprintf(tw, "  packets\tin %d, out %d\n", st.PacketsIn, st.PacketsOut)
	fmt.Fprintf(tw, "  discarded\t%s\n", strings.Join(d, ", "))
	fmt.Fprintf(tw, "  icmp6 in\t%s\n", joinCounts(st.ICMPv6In))
	fmt.Fprintf(tw, "  icmp6 sent\t%d errors refusing flows, %d suppressed by the rate limit (%s)\n", st.ICMPErrorsSent, st.ICMPRateLimited, joinCounts(st.ICMPv6Out))
	tw.Flush()
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// joinCounts prints counters by name, sorted: "a 1, b 2"; "none" if empty.
func joinCounts(m map[string]uint64) string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	var s []string
	for _, n := range names {
		s = append(s, fmt.Sprintf("%s %d", n, m[n]))
	}
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

const sysctlUsage = `usage: faithif sysctl [-w] net.inet6.ip6.keepfaith[=0|1]

Reads or sets the global capture switch, as sysctl(8) does on BSD. While it
is 0 (the default) nothing is captured: packets routed to a faith interface
are discarded and counted. Setting it applies to every running instance and
to interfaces created later.
`

func cmdSysctl(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("sysctl", sysctlUsage, stderr)
	fs.Bool("w", false, "set a value (accepted for compatibility; name=value sets)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	if fs.NArg() != 1 {
		return usagef("want exactly one argument: %s or %s=0|1", faithif.KeepFaithName, faithif.KeepFaithName)
	}
	key, value, set := strings.Cut(fs.Arg(0), "=")
	if key != faithif.KeepFaithName {
		return usagef("unknown oid %q (faithif knows only %s)", key, faithif.KeepFaithName)
	}
	runDir := faithif.RunDirFromEnv()
	old, err := runDir.KeepFaith()
	if err != nil {
		return err
	}
	if !set {
		fmt.Fprintf(stdout, "%s: %d\n", key, b2i(old))
		return nil
	}
	var on bool
	switch value {
	case "0":
	case "1":
		on = true
	default:
		return usagef("%s=%s: value must be 0 or 1", key, value)
	}
	if err := setKeepFaithEverywhere(context.Background(), runDir, on); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: %d -> %d\n", key, b2i(old), b2i(on))
	return nil
}
