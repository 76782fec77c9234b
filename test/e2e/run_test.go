package e2e

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/faithif/faithif/test/netlab"
)

// Tests of "faithif run --config FILE": the router appliance that applies
// a faithif.conf (interfaces, routes, sysctls, keepfaith, metrics) and
// undoes it on SIGTERM.

// Prefixes of the run tests' two interfaces, and where the client reaches
// the lab's server through each.
const (
	runPrefix0 = netlab.FaithPrefix // faith0, routed in main with metric 50
	runPrefix1 = "2001:db8:47::/96" // faith1, routed in table 100
	runTable1  = "100"
)

// runConf is the run tests' configuration: faith0 and faith1 with their
// routes (metric 50 in main; table 100), two sysctls, keepfaith and
// metrics. extra0 is added to faith0's table.
func runConf(extra0 string) string {
	return `# faithif run e2e test
keepfaith = true
metrics = "` + metricsAddr + `"
log_level = "info"

[sysctl]
"net.ipv6.conf.all.forwarding" = 1
"net.ipv6.conf.default.hop_limit" = 33

[[interface]]
name = "faith0"
prefixes = ["` + runPrefix0 + `"]
grace = "2s"
` + extra0 + `
  [[interface.route]]
  prefix = "` + runPrefix0 + `"
  metric = 50

[[interface]]
name = "faith1"
prefixes = ["` + runPrefix1 + `"]
mtu = 1400
grace = "2s"
  [[interface.route]]
  prefix = "` + runPrefix1 + `"
  table = ` + runTable1 + `
`
}

// prepareRunRouter readies the lab's router for runConf: IPv6 forwarding
// off (the configuration turns it on, and the client's flows need it) and
// a policy rule sending runPrefix1 to table 100 (the operator's, there
// before run and after).
func prepareRunRouter(t *testing.T, lab *netlab.Lab) {
	t.Helper()
	if err := lab.Router.Sysctl("net.ipv6.conf.all.forwarding", "0"); err != nil {
		t.Fatal(err)
	}
	if _, err := lab.Router.IP("-6", "rule", "add", "to", runPrefix1, "lookup", runTable1, "pref", "100"); err != nil {
		t.Fatal(err)
	}
}

// TestRunLifecycle runs the appliance through its whole life: the router's
// state is recorded; "faithif run --config" with two interfaces (routes
// with a metric and in table 100), two sysctls, keepfaith and metrics
// starts and is ready; real flows go through both interfaces byte for
// byte; show, the routes, the links, the sysctls and keepfaith are as
// configured; SIGTERM ends it with status 0 within 5 s, and the router is
// exactly as it was found.
func TestRunLifecycle(t *testing.T) {
	lab := netlab.New(t)
	ctx := testCtx(t, time.Minute)
	port := echoServer(t, lab)
	prepareRunRouter(t, lab)
	conf := filepath.Join(netlab.TempDir(t, "conf"), "faithif.conf")
	writeFile(t, conf, runConf(""))

	before := snapshot(t, lab.Router, lab.RunDir)
	if before.KeepFaith != "net.inet6.ip6.keepfaith: 0" || before.Sysctls["net.ipv6.conf.all.forwarding"] != "0" {
		t.Fatalf("unexpected starting state: keepfaith %q, forwarding %q", before.KeepFaith, before.Sysctls["net.ipv6.conf.all.forwarding"])
	}
	if strings.Contains(before.Links, "faith") {
		t.Fatalf("faith links before run:\n%s", before.Links)
	}

	f := lab.StartRun(t, "--config", conf)

	// Links: both up, with their MTUs.
	for _, l := range []struct {
		name string
		mtu  int
	}{{"faith0", 1500}, {"faith1", 1400}} {
		out, err := lab.Router.IP("-o", "link", "show", "dev", l.name)
		if err != nil {
			t.Fatalf("%s after ready: %v", l.name, err)
		}
		if !regexp.MustCompile(`<[^>]*\bUP\b[^>]*>`).MatchString(out) || !strings.Contains(out, fmt.Sprintf(" mtu %d ", l.mtu)) {
			t.Errorf("%s: %s; want UP, mtu %d", l.name, out, l.mtu)
		}
	}
	// Routes: faith0's in main with metric 50, faith1's in table 100 only.
	all, err := lab.Router.IP("-6", "route", "show", "table", "all")
	if err != nil {
		t.Fatal(err)
	}
	main, err := lab.Router.IP("-6", "route", "show", "table", "main")
	if err != nil {
		t.Fatal(err)
	}
	t100, err := lab.Router.IP("-6", "route", "show", "table", runTable1)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(runPrefix0) + ` dev faith0 .*metric 50\b`).MatchString(main) {
		t.Errorf("no route %s dev faith0 metric 50 in main:\n%s", runPrefix0, main)
	}
	if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(runPrefix1) + ` dev faith1 `).MatchString(t100) {
		t.Errorf("no route %s dev faith1 in table %s:\n%s", runPrefix1, runTable1, t100)
	}
	if strings.Contains(main, runPrefix1) {
		t.Errorf("route %s is in main; want it in table %s only:\n%s", runPrefix1, runTable1, main)
	}
	if n := strings.Count(all, runPrefix0); n != 1 {
		t.Errorf("%d routes for %s in all tables, want 1:\n%s", n, runPrefix0, all)
	}
	// Sysctls and keepfaith.
	for k, want := range map[string]string{"net.ipv6.conf.all.forwarding": "1", "net.ipv6.conf.default.hop_limit": "33"} {
		if v, err := lab.Router.ReadSysctl(k); err != nil || v != want {
			t.Errorf("sysctl %s = %q (%v) while running, want %s", k, v, err, want)
		}
	}
	if k := keepfaith(t, lab.Router, lab.RunDir); k != "net.inet6.ip6.keepfaith: 1" {
		t.Errorf("faithif sysctl while running: %q, want net.inet6.ip6.keepfaith: 1", k)
	}
	// Ready as metrics see it.
	if code, body, err := lab.Router.HTTPGet(ctx, "http://"+metricsAddr+"/readyz"); err != nil || code != 200 {
		t.Errorf("/readyz while running: %d %q %v, want 200", code, body, err)
	}

	// Traffic through both interfaces, byte for byte.
	echoFlows(t, ctx, lab, faithTo(runPrefix0, netlab.ServerAddr, port), 2, 200<<10, 100)
	echoFlows(t, ctx, lab, faithTo(runPrefix1, netlab.ServerAddr, port), 3, 200<<10, 200)

	// show, per interface and as a list.
	for _, want := range []struct {
		name, prefix, route string
		mtu                 int
		flows               uint64
	}{
		{"faith0", runPrefix0, runPrefix0 + " metric 50", 1500, 2},
		{"faith1", runPrefix1, runPrefix1 + " table " + runTable1, 1400, 3},
	} {
		st, err := lab.ShowIf(want.name)
		if err != nil {
			t.Fatal(err)
		}
		if st.Name != want.name || st.PID != f.Pid() || !slices.Equal(st.Prefixes, []string{want.prefix}) ||
			!slices.Equal(st.Routes, []string{want.route}) || st.MTU != want.mtu || !st.KeepFaith || st.Draining {
			t.Errorf("show %s: %s\nwant name %s, pid %d, prefixes [%s], routes [%s], mtu %d, keepfaith, not draining",
				want.name, st.Raw, want.name, f.Pid(), want.prefix, want.route, want.mtu)
		}
		if st.FlowsAccepted != want.flows || st.FlowsTotal != want.flows || st.BytesIn != want.flows*(200<<10) || st.BytesOut != want.flows*(200<<10) {
			t.Errorf("show %s: flows accepted %d total %d, bytes %d/%d; want %d flows of %d bytes each way",
				want.name, st.FlowsAccepted, st.FlowsTotal, st.BytesIn, st.BytesOut, want.flows, 200<<10)
		}
	}
	if list, raw, err := lab.List(); err != nil {
		t.Error(err)
	} else if len(list) != 2 || list[0].Name != "faith0" || list[1].Name != "faith1" {
		t.Errorf("list --json: %s, want faith0 and faith1", raw)
	}
	if r := lab.Faithif("show"); r.ExitCode != 0 || !strings.Contains(r.Stdout, "faith0:") || !strings.Contains(r.Stdout, "faith1:") {
		t.Errorf("faithif show: %s", r)
	}

	stopRun(t, f, 20*time.Second)
	log := f.Stderr()
	// With no open flow the drain ends at once, not when the grace runs out.
	if strings.Contains(log, "resetting flows") {
		t.Errorf("run waited out the grace with no open flow:\n%s", log)
	}
	for _, subs := range [][]string{
		{`msg="sysctl set"`, "key=net.ipv6.conf.all.forwarding", "value=1", "was=0"},
		{`msg="keepfaith set"`, "value=1", "was=0"},
		{`msg="appliance ready"`, "interfaces=2"},
		{"msg=stopped", "interface=faith0"},
		{"msg=stopped", "interface=faith1"},
		{`msg="keepfaith put back"`, "value=0"},
		{`msg="sysctls put back"`, "count=2"},
	} {
		if _, ok := findLine(log, subs...); !ok {
			t.Errorf("no log line with %q", subs)
		}
	}
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "level=WARN") && !strings.Contains(l, `msg="no access rules`) {
			t.Errorf("warning in the log: %s", l)
		}
	}
	sameState(t, "after SIGTERM", before, snapshot(t, lab.Router, lab.RunDir))
	checkNothingLeft(t, lab, "after SIGTERM")
}

// firstLine shortens a multi-line message for the test log.
// lastLine returns the last non-empty line of s: a failed command's error.
func lastLine(s string) string {
	s = strings.TrimRight(s, "\n")
	return s[strings.LastIndexByte(s, '\n')+1:]
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return fmt.Sprintf("%s [+%d lines]", s[:i], strings.Count(s, "\n"))
	}
	return s
}

// errTemplate is a valid configuration with places for a case to break:
// {TOP} after keepfaith, {SYSCTL} in [sysctl], {N1} faith1's name, {P0}
// and {P1} the prefixes, {IF0} and {IF1} at the end of each interface's
// keys, {R0} faith0's route prefix, {ROUTE0} after it. If applied, it
// would change the router: keepfaith 1, forwarding 0, hop_limit 33, two
// links, a route.
const errTemplate = `keepfaith = true
{TOP}
[sysctl]
"net.ipv6.conf.all.forwarding" = 0
"net.ipv6.conf.default.hop_limit" = 33
{SYSCTL}
[[interface]]
name = "faith0"
prefixes = [{P0}]
{IF0}
  [[interface.route]]
  prefix = {R0}
  {ROUTE0}

[[interface]]
name = {N1}
prefixes = [{P1}]
{IF1}
`

var errDefaults = map[string]string{
	"{TOP}": "", "{SYSCTL}": "", "{N1}": `"faith1"`, "{P0}": `"2001:db8:46::/96"`, "{P1}": `"2001:db8:47::/96"`,
	"{IF0}": "", "{IF1}": "", "{R0}": `"2001:db8:46::/96"`, "{ROUTE0}": "",
}

func fillTemplate(repl map[string]string) string {
	s := errTemplate
	for k, def := range errDefaults {
		v, ok := repl[k]
		if !ok {
			v = def
		}
		s = strings.ReplaceAll(s, k, v)
	}
	return s
}

// TestRunConfigErrors runs "faithif run --config FILE" (and --check) on
// bad files: each exits with status 1 at once, names FILE:LINE: KEY on
// stderr, and changes nothing in the router (links, routes, sysctls,
// keepfaith, run directory), although the rest of the file would.
func TestRunConfigErrors(t *testing.T) {
	lab := netlab.New(t)
	dir := netlab.TempDir(t, "conf")
	badRules := filepath.Join(dir, "bad-faithd.conf")
	writeFile(t, badRules, "2001:db8:1::/64 permit 192.0.2.0/24\n2001:db8:1::/64 allow 192.0.2.0/24\n")
	okRules := filepath.Join(dir, "faithd.conf")
	writeFile(t, okRules, "2001:db8:1::/64 permit 192.0.2.0/24\n")

	type tc struct {
		name string
		repl map[string]string // on errTemplate
		text string            // instead of the template
		// at is a substring of the offending line (its number goes in the
		// expected message), "" for an error about the file as a whole;
		// key is the key named; more must also appear.
		at, key string
		more    []string
	}
	cases := []tc{
		{name: "Syntax", repl: map[string]string{"{IF0}": "mtu = = 1400"}, at: "mtu = = 1400"},
		{name: "SyntaxTableHeader", repl: map[string]string{"{IF1}": "[[interface.route] # broken\nprefix = \"2001:db8:47::/96\""}, at: "# broken"},
		{name: "UnknownTopKey", repl: map[string]string{"{TOP}": "keepfath = true"}, at: "keepfath", key: "keepfath", more: []string{"unknown key"}},
		{name: "UnknownInterfaceKey", repl: map[string]string{"{IF1}": "mtux = 1400"}, at: "mtux", key: "interface.mtux", more: []string{"unknown key"}},
		{name: "UnknownRouteKey", repl: map[string]string{"{ROUTE0}": "metrik = 5"}, at: "metrik", key: "interface.route.metrik", more: []string{"unknown key"}},
		{name: "WrongTypeMTU", repl: map[string]string{"{IF0}": `mtu = "big"`}, at: `mtu = "big"`, key: "interface.mtu"},
		{name: "WrongTypeKeepfaith", text: "keepfaith = 1\n" + fillTemplate(nil)[len("keepfaith = true\n"):], at: "keepfaith = 1", key: "keepfaith"},
		{name: "WrongTypeMetrics", repl: map[string]string{"{TOP}": "metrics = 9464"}, at: "metrics = 9464", key: "metrics"},
		{name: "BadPrefixLength", repl: map[string]string{"{P1}": `"2001:db8:47::/33"`}, at: "2001:db8:47::/33", key: "interface.prefixes", more: []string{"2001:db8:47::/33"}},
		{name: "BadPrefixIPv4", repl: map[string]string{"{P1}": `"192.0.2.0/24"`}, at: "192.0.2.0/24", key: "interface.prefixes"},
		{name: "BadPrefixText", repl: map[string]string{"{P0}": `"nonsense"`}, at: "nonsense", key: "interface.prefixes"},
		{name: "BadMTU", repl: map[string]string{"{IF1}": "mtu = 900"}, at: "mtu = 900", key: "interface.mtu", more: []string{"900"}},
		{name: "OverlappingPrefixes", repl: map[string]string{"{P1}": `"2001:db8:46::/64"`}, at: "2001:db8:46::/64", key: "interface.prefixes", more: []string{"overlaps"}},
		{name: "OverlapInOne", repl: map[string]string{"{P1}": `"2001:db8:47::/96", "2001:db8:47::/64"`}, at: "2001:db8:47::/64", key: "interface.prefixes", more: []string{"overlaps"}},
		{name: "DuplicateInterface", repl: map[string]string{"{N1}": `"faith0"`, "{P1}": `"2001:db8:47::/96"`}, at: `name = "faith0"` + "\nprefixes = [\"2001:db8:47", key: "interface.name", more: []string{"configured twice"}},
		{name: "BadName", repl: map[string]string{"{N1}": `"eth0"`}, at: `"eth0"`, key: "interface.name", more: []string{"faith<N>"}},
		{name: "RouteOutsidePrefixes", repl: map[string]string{"{R0}": `"2001:db8:47::/96"`}, at: `prefix = "2001:db8:47::/96"`, key: "interface.route.prefix", more: []string{"not inside"}},
		{name: "RouteHostBits", repl: map[string]string{"{R0}": `"2001:db8:46::1/96"`}, at: "2001:db8:46::1/96", key: "interface.route.prefix", more: []string{"host bits"}},
		{name: "RouteTableLocal", repl: map[string]string{"{ROUTE0}": "table = 255"}, at: "table = 255", key: "interface.route.table"},
		{name: "RouteMetricNegative", repl: map[string]string{"{ROUTE0}": "metric = -1"}, at: "metric = -1", key: "interface.route.metric"},
		{name: "MissingSysctl", repl: map[string]string{"{SYSCTL}": `"net.ipv6.conf.all.no_such_thing" = 1`}, at: "no_such_thing", key: "sysctl.net.ipv6.conf.all.no_such_thing", more: []string{"no such kernel parameter"}},
		{name: "ReadOnlySysctl", repl: map[string]string{"{SYSCTL}": `"kernel.ngroups_max" = 1`}, at: "ngroups_max", key: "sysctl.kernel.ngroups_max", more: []string{"read-only"}},
		{name: "SysctlNotAName", repl: map[string]string{"{SYSCTL}": `"net/../../etc" = 1`}, at: "net/../../etc", key: "sysctl.net/../../etc", more: []string{"not a sysctl name"}},
		{name: "SysctlValueList", repl: map[string]string{"{SYSCTL}": `"net.ipv4.ip_forward" = [1]`}, at: "ip_forward", key: "sysctl.net.ipv4.ip_forward"},
		{name: "BadRulesFile", repl: map[string]string{"{IF0}": `rules = "` + badRules + `"`}, at: "rules =", key: "interface.rules", more: []string{badRules + ":2:"}},
		{name: "MissingRulesFile", repl: map[string]string{"{IF1}": `rules = "` + filepath.Join(dir, "missing.conf") + `"`}, at: "rules =", key: "interface.rules", more: []string{filepath.Join(dir, "missing.conf")}},
		{name: "BadMetricsAddress", repl: map[string]string{"{TOP}": `metrics = "9464"`}, at: `metrics = "9464"`, key: "metrics"},
		{name: "BadMetricsPort", repl: map[string]string{"{TOP}": `metrics = "127.0.0.1:99999"`}, at: "99999", key: "metrics"},
		{name: "BadMetricsHost", repl: map[string]string{"{TOP}": `metrics = "example.invalid:9464"`}, at: "example.invalid", key: "metrics"},
		{name: "BadDenyWith", repl: map[string]string{"{IF1}": `deny_with = "drop"`}, at: "deny_with", key: "interface.deny_with"},
		{name: "BadDuration", repl: map[string]string{"{IF0}": `grace = "soon"`}, at: "grace", key: "interface.grace", more: []string{"not a duration"}},
		{name: "ZeroDialTimeout", repl: map[string]string{"{IF1}": `dial_timeout = "0s"`}, at: "dial_timeout", key: "interface.dial_timeout"},
		{name: "BadLimit", repl: map[string]string{"{IF1}": "max_flows_per_client = 0"}, at: "max_flows_per_client", key: "interface.max_flows_per_client"},
		{name: "BadLogFormat", repl: map[string]string{"{TOP}": `log_format = "xml"`}, at: "log_format", key: "log_format"},
		{name: "BadLogLevel", repl: map[string]string{"{TOP}": `log_level = "loud"`}, at: "log_level", key: "log_level"},
		{name: "NoInterfaces", text: "keepfaith = true\n[sysctl]\n\"net.ipv6.conf.all.forwarding\" = 0\n", key: "interface", more: []string{"no [[interface]]"}},
		{name: "EmptyFile", text: "", key: "interface", more: []string{"no [[interface]]"}},
		{name: "MissingPrefixes", text: "[[interface]]\nname = \"faith0\"\n", at: "[[interface]]", key: "interface.prefixes", more: []string{"missing"}},
	}
	before := snapshot(t, lab.Router, lab.RunDir)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			text := c.text
			if c.repl != nil {
				text = fillTemplate(c.repl)
			}
			conf := filepath.Join(dir, c.name+".conf")
			writeFile(t, conf, text)
			want := conf + ": "
			if c.at != "" {
				want = fmt.Sprintf("%s:%d: ", conf, lineOf(t, text, c.at))
			}
			if c.key != "" {
				want += c.key + ": "
			}
			for _, args := range [][]string{{"run", "--config", conf}, {"run", "--check", "--config", conf}} {
				start := time.Now()
				r := lab.Faithif(args...)
				d := time.Since(start)
				t.Logf("%s: exit %d after %v: %s", strings.Join(args, " "), r.ExitCode, d.Round(time.Millisecond), firstLine(r.Stderr))
				if r.Err != nil || r.ExitCode != 1 {
					t.Errorf("%s: %s; want exit 1", strings.Join(args, " "), r)
				}
				if !strings.Contains(r.Stderr, want) {
					t.Errorf("stderr does not name %q:\n%s\nfile:\n%s", want, r.Stderr, text)
				}
				for _, m := range c.more {
					if !strings.Contains(r.Stderr, m) {
						t.Errorf("stderr does not say %q:\n%s", m, r.Stderr)
					}
				}
				if r.Stdout != "" {
					t.Errorf("stdout %q, want nothing", r.Stdout)
				}
				sameState(t, "after "+strings.Join(args, " "), before, snapshot(t, lab.Router, lab.RunDir))
			}
		})
	}

	t.Run("EveryErrorReported", func(t *testing.T) {
		text := fillTemplate(map[string]string{"{TOP}": `log_level = "loud"`, "{IF0}": "mtu = 900", "{P1}": `"2001:db8:47::/33"`})
		conf := filepath.Join(dir, "many.conf")
		writeFile(t, conf, text)
		r := lab.Faithif("run", "--config", conf)
		if r.ExitCode != 1 {
			t.Errorf("%s; want exit 1", r)
		}
		for _, w := range []string{
			fmt.Sprintf("%s:%d: log_level: ", conf, lineOf(t, text, "log_level")),
			fmt.Sprintf("%s:%d: interface.mtu: ", conf, lineOf(t, text, "mtu = 900")),
			fmt.Sprintf("%s:%d: interface.prefixes: ", conf, lineOf(t, text, "/33")),
		} {
			if !strings.Contains(r.Stderr, w) {
				t.Errorf("stderr does not name %q:\n%s", w, r.Stderr)
			}
		}
		sameState(t, "after a file with three errors", before, snapshot(t, lab.Router, lab.RunDir))
	})
	t.Run("MissingFile", func(t *testing.T) {
		conf := filepath.Join(dir, "nonexistent.conf")
		r := lab.Faithif("run", "--config", conf)
		if r.ExitCode != 1 || !strings.Contains(r.Stderr, conf) {
			t.Errorf("%s; want exit 1 naming %s", r, conf)
		}
		sameState(t, "after a missing file", before, snapshot(t, lab.Router, lab.RunDir))
	})
	t.Run("Valid", func(t *testing.T) {
		// The template itself is fine: the errors above are the cases'.
		conf := filepath.Join(dir, "valid.conf")
		writeFile(t, conf, fillTemplate(map[string]string{"{IF0}": `rules = "` + okRules + `"`}))
		if r := lab.Faithif("run", "--check", "--config", conf); r.ExitCode != 0 {
			t.Errorf("run --check on the template: %s; want exit 0", r)
		}
	})
}

// TestRunApplyFailures checks failures found once the file is fine, while
// applying it: what was applied before (sysctls, keepfaith, a first
// interface with its route, the metrics listener) is undone, the exit
// status is 1, the error names the cause, and the router is as it was.
func TestRunApplyFailures(t *testing.T) {
	lab := netlab.New(t)
	dir := netlab.TempDir(t, "conf")
	conf := filepath.Join(dir, "faithif.conf")
	// faith0 with a route in table 100, faith1 with one in main; the router
	// has forwarding 1 and hop_limit 64, which the file changes.
	text := `keepfaith = true
metrics = "` + metricsAddr + `"
[sysctl]
"net.ipv6.conf.all.forwarding" = 0
"net.ipv6.conf.default.hop_limit" = 33
{SYSCTL}
[[interface]]
name = "faith0"
prefixes = ["2001:db8:46::/96"]
  [[interface.route]]
  prefix = "2001:db8:46::/96"
  table = 100
  metric = 7
[[interface]]
name = "faith1"
prefixes = ["2001:db8:47::/96"]
  [[interface.route]]
  prefix = "2001:db8:47::/96"
`
	writeFile(t, conf, strings.ReplaceAll(text, "{SYSCTL}", ""))

	run := func(t *testing.T, conf string, subs ...string) string {
		t.Helper()
		before := snapshot(t, lab.Router, lab.RunDir)
		start := time.Now()
		r := lab.Faithif("run", "--config", conf)
		d := time.Since(start)
		t.Logf("exit %d after %v, stderr:\n%s", r.ExitCode, d.Round(time.Millisecond), r.Stderr)
		if r.Err != nil || r.ExitCode != 1 {
			t.Errorf("%s; want exit 1", r)
		}
		if strings.Contains(r.Stderr, "panic:") {
			t.Errorf("run panicked:\n%s", r.Stderr)
		}
		// The error is the last line: the log lines before it (msg=ready
		// interface=faith0 ...) name the same interfaces and prefixes.
		last := lastLine(r.Stderr)
		for _, s := range subs {
			if !strings.Contains(last, s) {
				t.Errorf("the final error line does not say %q: %s", s, last)
			}
		}
		sameState(t, "after the failed run", before, snapshot(t, lab.Router, lab.RunDir))
		if hasLink(t, lab, "faith0") {
			t.Errorf("faith0 left behind")
		}
		return r.Stderr
	}

	t.Run("RouteExists", func(t *testing.T) {
		// faith1's route is taken: faith0, its route, the sysctls,
		// keepfaith and the metrics listener were all applied first.
		if _, err := lab.Router.IP("-6", "route", "add", "2001:db8:47::/96", "dev", "lo"); err != nil {
			t.Fatal(err)
		}
		defer lab.Router.IP("-6", "route", "del", "2001:db8:47::/96", "dev", "lo")
		log := run(t, conf, "2001:db8:47::/96", "exists")
		for _, subs := range [][]string{
			{`msg="serving metrics"`, metricsAddr},
			{`msg="sysctl set"`, "key=net.ipv6.conf.all.forwarding", "value=0", "was=1"},
			{`msg="sysctl set"`, "key=net.ipv6.conf.default.hop_limit", "value=33", "was=64"},
			{`msg="keepfaith set"`, "value=1"},
			{"msg=ready", "interface=faith0", "2001:db8:46::/96 metric 7 table 100"},
			{"msg=stopped", "interface=faith0"},
			{`msg="keepfaith put back"`, "value=0"},
			{`msg="sysctls put back"`, "count=2"},
		} {
			if _, ok := findLine(log, subs...); !ok {
				t.Errorf("no log line with %q: the failure came before that was applied, or it was not undone", subs)
			}
		}
		if _, ok := findLine(log, "msg=ready", "interface=faith1"); ok {
			t.Errorf("faith1 became ready although its route could not be added")
		}
		if _, ok := findLine(log, `msg="appliance ready"`); ok {
			t.Errorf("the appliance said it was ready")
		}
		if rt, _ := lab.Router.IP("-6", "route", "show", "table", "100"); strings.Contains(rt, "2001:db8:46::") {
			t.Errorf("faith0's route left in table 100: %s", rt)
		}
		// The metrics port is free again.
		l, err := lab.Router.Listen("tcp", metricsAddr)
		if err != nil {
			t.Errorf("metrics port still taken after the failed run: %v", err)
		} else {
			l.Close()
		}
	})
	t.Run("SysctlWriteFails", func(t *testing.T) {
		// hop_limit 0 is refused by the kernel (EINVAL) when written: the
		// two sysctls before it were set and are put back.
		bad := filepath.Join(dir, "sysctl-write.conf")
		btext := strings.ReplaceAll(text, "{SYSCTL}", `"net.ipv6.conf.default.accept_dad" = 1`+"\n"+`"net.ipv6.conf.all.hop_limit" = 0`)
		writeFile(t, bad, btext)
		log := run(t, bad, fmt.Sprintf("%s:%d: ", bad, lineOf(t, btext, "all.hop_limit")), "net.ipv6.conf.all.hop_limit")
		if _, ok := findLine(log, `msg="sysctls put back"`); !ok {
			// The change log comes after all were set; check the values.
			t.Logf("no sysctls put back line (fine if the values are back, checked above)")
		}
	})
	for _, kind := range []struct {
		name string
		args []string
	}{
		{"Tap", []string{"tuntap", "add", "dev", "faith1", "mode", "tap"}}, // a persistent TUN device is adopted (TestAdoptTUN)
		{"Veth", []string{"link", "add", "faith1", "type", "veth", "peer", "name", "faith1p"}},
	} {
		t.Run("InterfaceExists/"+kind.name, func(t *testing.T) {
			if _, err := lab.Router.IP(kind.args...); err != nil {
				t.Fatal(err)
			}
			defer lab.Router.IP("link", "del", "faith1")
			was, err := lab.Router.IP("-d", "-o", "link", "show", "dev", "faith1")
			if err != nil {
				t.Fatal(err)
			}
			run(t, conf, "faith1", "already exists")
			if now, err := lab.Router.IP("-d", "-o", "link", "show", "dev", "faith1"); err != nil || now != was {
				t.Errorf("the existing faith1 changed:\nbefore: %s\nafter:  %s %v", was, now, err)
			}
		})
	}
	t.Run("MetricsPortInUse", func(t *testing.T) {
		l, err := lab.Router.Listen("tcp", metricsAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		log := run(t, conf, "metrics", metricsAddr, "address already in use")
		if _, ok := findLine(log, `msg="sysctl set"`); ok {
			t.Errorf("sysctls were set before the metrics address was found taken")
		}
	})
	t.Run("MetricsFlagPortInUse", func(t *testing.T) {
		// --metrics overrides the file's address, and is checked the same.
		l, err := lab.Router.Listen("tcp", "127.0.0.1:9465")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		before := snapshot(t, lab.Router, lab.RunDir)
		r := lab.Faithif("run", "--config", conf, "--metrics", "127.0.0.1:9465")
		if r.ExitCode != 1 || !strings.Contains(r.Stderr, "127.0.0.1:9465") {
			t.Errorf("%s; want exit 1 naming 127.0.0.1:9465", r)
		}
		sameState(t, "after run --metrics on a taken port", before, snapshot(t, lab.Router, lab.RunDir))
	})
}

// TestRunUsage checks the command-line errors of run: exit status 2, a
// message naming the problem, nothing changed.
func TestRunUsage(t *testing.T) {
	lab := netlab.New(t)
	conf := filepath.Join(netlab.TempDir(t, "conf"), "faithif.conf")
	writeFile(t, conf, runConf(""))
	before := snapshot(t, lab.Router, lab.RunDir)
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"NoConfig", []string{"run"}, "--config"},
		{"NoConfigButMetrics", []string{"run", "--metrics", metricsAddr}, "--config"},
		{"StrayArgument", []string{"run", "--config", conf, "faith0"}, `unexpected argument "faith0"`},
		{"StrayArgumentFirst", []string{"run", "stray", "--config", conf}, `"stray"`},
		{"MetricsBad", []string{"run", "--config", conf, "--metrics", "bad"}, "--metrics"},
		{"MetricsBadPort", []string{"run", "--config", conf, "--metrics", "127.0.0.1:99999"}, "--metrics"},
		{"UnknownFlag", []string{"run", "--config", conf, "--frob"}, "frob"},
		{"ConfigWithoutValue", []string{"run", "--config"}, "config"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := lab.Faithif(c.args...)
			t.Logf("%s: exit %d, stderr: %s", strings.Join(c.args, " "), r.ExitCode, firstLine(r.Stderr))
			if r.Err != nil || r.ExitCode != 2 {
				t.Errorf("%s; want exit 2", r)
			}
			if !strings.Contains(r.Stderr, c.want) {
				t.Errorf("stderr %q does not mention %q", r.Stderr, c.want)
			}
			sameState(t, "after "+strings.Join(c.args, " "), before, snapshot(t, lab.Router, lab.RunDir))
		})
	}
	t.Run("Help", func(t *testing.T) {
		r := lab.Faithif("run", "--help")
		if r.ExitCode != 0 || !strings.Contains(r.Stderr+r.Stdout, "usage: faithif run --config FILE") {
			t.Errorf("run --help: %s", r)
		}
	})
}

// TestRunCheck checks "run --check": it prints what run would apply and
// exits 0, changing nothing; --metrics overrides the file's address in the
// plan.
func TestRunCheck(t *testing.T) {
	lab := netlab.New(t)
	prepareRunRouter(t, lab)
	dir := netlab.TempDir(t, "conf")
	rules := filepath.Join(dir, "faithd.conf")
	writeFile(t, rules, "2001:db8:1::/64 permit 192.0.2.0/24\n")
	conf := filepath.Join(dir, "faithif.conf")
	writeFile(t, conf, runConf(`rules = "`+rules+`"`))
	before := snapshot(t, lab.Router, lab.RunDir)

	for _, c := range []struct {
		name    string
		args    []string
		metrics string
	}{
		{"FileMetrics", nil, metricsAddr},
		{"FlagMetrics", []string{"--metrics", "[::1]:9999"}, "[::1]:9999"},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"run", "--check", "--config", conf}, c.args...)
			r := lab.Faithif(args...)
			t.Logf("%s:\n%s", strings.Join(args, " "), r.Stdout)
			if r.Err != nil || r.ExitCode != 0 {
				t.Fatalf("%s; want exit 0", r)
			}
			want := []string{
				conf + ": ok",
				"  net.inet6.ip6.keepfaith=1",
				"  sysctl net.ipv6.conf.all.forwarding=1",
				"  sysctl net.ipv6.conf.default.hop_limit=33",
				"  faith0: prefixes [" + runPrefix0 + "], mtu 1500, rules " + rules + ", ftp ports [21]",
				"    route " + runPrefix0 + " metric 50 dev faith0",
				"  faith1: prefixes [" + runPrefix1 + "], mtu 1400, ftp ports [21]",
				"    route " + runPrefix1 + " table " + runTable1 + " dev faith1",
				"  metrics on " + c.metrics,
			}
			got := strings.Split(strings.TrimRight(r.Stdout, "\n"), "\n")
			if !slices.Equal(got, want) {
				t.Errorf("run --check printed:\n%s\nwant:\n%s", r.Stdout, strings.Join(want, "\n"))
			}
			if strings.TrimSpace(r.Stderr) != "" {
				t.Errorf("stderr %q, want nothing", r.Stderr)
			}
			sameState(t, "after run --check", before, snapshot(t, lab.Router, lab.RunDir))
			if l, err := lab.Router.Listen("tcp", metricsAddr); err != nil {
				t.Errorf("run --check left %s taken: %v", metricsAddr, err)
			} else {
				l.Close()
			}
		})
	}
	// --check does not need the interfaces to be creatable: it checks the
	// file, and a running appliance with the same file is untouched.
	t.Run("WhileRunning", func(t *testing.T) {
		f := lab.StartRun(t, "--config", conf)
		r := lab.Faithif("run", "--check", "--config", conf)
		if r.ExitCode != 0 {
			t.Errorf("run --check while the appliance runs: %s", r)
		}
		st, err := lab.ShowIf("faith0")
		if err != nil || st.PID != f.Pid() {
			t.Errorf("show faith0 after --check: %v %v", st, err)
		}
		stopRun(t, f, 5*time.Second)
		sameState(t, "after the appliance stopped", before, snapshot(t, lab.Router, lab.RunDir))
	})
}

// TestRunInterfaceRemoved deletes one of the appliance's interfaces under
// it ("ip link del faith1"): an appliance is all or nothing, so the other
// interface is stopped too, the exit status is 1 (for a supervisor to
// restart it whole), the error names faith1, and the router is as found.
func TestRunInterfaceRemoved(t *testing.T) {
	lab := netlab.New(t)
	ctx := testCtx(t, time.Minute)
	port := echoServer(t, lab)
	prepareRunRouter(t, lab)
	conf := filepath.Join(netlab.TempDir(t, "conf"), "faithif.conf")
	writeFile(t, conf, runConf(""))
	before := snapshot(t, lab.Router, lab.RunDir)
	f := lab.StartRun(t, "--config", conf)
	echoFlows(t, ctx, lab, faithTo(runPrefix1, netlab.ServerAddr, port), 1, 1000, 400)

	f.ExpectExit()
	if _, err := lab.Router.IP("link", "del", "faith1"); err != nil {
		t.Fatal(err)
	}
	if !f.Wait(5 * time.Second) {
		t.Fatalf("faithif run still running 5 s after faith1 was deleted\nstderr:\n%s", f.Stderr())
	}
	var ee *exec.ExitError
	if err := f.ExitErr(); !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Errorf("exit after faith1 was deleted: %v, want status 1", err)
	}
	if _, ok := findLine(f.Stderr(), "faith1"); !ok || !strings.Contains(f.Stderr(), "faithif: ") {
		t.Errorf("no error naming faith1:\n%s", f.Stderr())
	}
	if _, ok := findLine(f.Stderr(), "msg=stopped", "interface=faith0"); !ok {
		t.Errorf("faith0 was not stopped:\n%s", f.Stderr())
	}
	sameState(t, "after faith1 was deleted", before, snapshot(t, lab.Router, lab.RunDir))
	checkNothingLeft(t, lab, "after faith1 was deleted")
}

// TestRunSighup changes faith0's access file and sends SIGHUP to the
// appliance: new flows follow the new file; a broken file is rejected and
// the rules in force stay.
func TestRunSighup(t *testing.T) {
	lab := netlab.New(t)
	ctx := testCtx(t, time.Minute)
	port := echoServer(t, lab)
	prepareRunRouter(t, lab)
	dir := netlab.TempDir(t, "conf")
	rules := filepath.Join(dir, "faithd.conf")
	writeFile(t, rules, "2001:db8:1::/64 permit 192.0.2.0/24\n")
	conf := filepath.Join(dir, "faithif.conf")
	writeFile(t, conf, runConf(`rules = "`+rules+`"`))
	f := lab.StartRun(t, "--config", conf)
	addr := faithTo(runPrefix0, netlab.ServerAddr, port)
	echoFlows(t, ctx, lab, addr, 1, 1000, 500)

	hup := func(n int) {
		t.Helper()
		if err := f.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		if _, ok := f.WaitLog(2*time.Second, func(string) bool {
			return countLines(f.Stderr(), "interface=faith0", "reload") >= n
		}); !ok {
			t.Fatalf("no reload logged after SIGHUP %d:\n%s", n, f.Stderr())
		}
	}
	writeFile(t, rules, "2001:db8:1::/64 deny 192.0.2.0/24\n")
	hup(1)
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	c, err := lab.Client.Dial(dctx, "tcp6", addr)
	cancel()
	if err == nil {
		c.Close()
		t.Fatalf("connected after SIGHUP with a file that denies")
	} else if !errors.Is(err, syscall.EACCES) {
		t.Errorf("connect after SIGHUP with a file that denies: %v, want EACCES", err)
	}
	writeFile(t, rules, "2001:db8:1::/64 allow 192.0.2.0/24\n")
	hup(2)
	if line, ok := findLine(f.Stderr(), "reload failed", rules+":1:"); !ok {
		t.Errorf("the broken file's error is not logged:\n%s", f.Stderr())
	} else {
		t.Logf("log: %s", line)
	}
	dctx, cancel = context.WithTimeout(ctx, 5*time.Second)
	c, err = lab.Client.Dial(dctx, "tcp6", addr)
	cancel()
	if err == nil {
		c.Close()
		t.Errorf("connected after a broken file was rejected: the denying rules should stay")
	} else if !errors.Is(err, syscall.EACCES) {
		t.Errorf("connect after a broken file was rejected: %v, want EACCES (the denying rules still in force)", err)
	}
	if st, err := lab.ShowIf("faith0"); err != nil || st.FlowsDenied != 2 || st.FlowsAccepted != 1 {
		t.Errorf("show faith0: %v %v; want 1 accepted, 2 denied", st, err)
	}
	stopRun(t, f, 5*time.Second)
}

// TestRunKeepSysctls: with sysctl_on_stop = "keep" (a host whose sysctls
// sysctl.d manages), the sysctls stay as set after a stop; everything
// else (links, routes, keepfaith) is removed as usual. A start that fails
// puts them back all the same.
func TestRunKeepSysctls(t *testing.T) {
	lab := netlab.New(t)
	prepareRunRouter(t, lab)
	dir := netlab.TempDir(t, "conf")
	conf := filepath.Join(dir, "faithif.conf")
	writeFile(t, conf, "sysctl_on_stop = \"keep\"\n"+runConf(""))
	if r := lab.Faithif("run", "--config", conf, "--check"); r.ExitCode != 0 || !strings.Contains(r.Stdout, "sysctls kept after stop (sysctl_on_stop = keep)") {
		t.Errorf("run --check: %s; want the plan to say the sysctls are kept", r)
	}
	hop0, err := lab.Router.ReadSysctl("net.ipv6.conf.default.hop_limit")
	if err != nil {
		t.Fatal(err)
	}
	f := lab.StartRun(t, "--config", conf)
	stopRun(t, f, 5*time.Second)
	for k, want := range map[string]string{"net.ipv6.conf.all.forwarding": "1", "net.ipv6.conf.default.hop_limit": "33"} {
		if v, err := lab.Router.ReadSysctl(k); err != nil || v != want {
			t.Errorf("sysctl %s = %q (%v) after stop with sysctl_on_stop = keep, want %s", k, v, err, want)
		}
	}
	if _, ok := findLine(f.Stderr(), `msg="sysctls kept"`, "count=2"); !ok {
		t.Errorf("no sysctls kept line:\n%s", f.Stderr())
	}
	if _, ok := findLine(f.Stderr(), `msg="sysctls put back"`); ok {
		t.Errorf("sysctls put back although sysctl_on_stop = keep:\n%s", f.Stderr())
	}
	if k := keepfaith(t, lab.Router, lab.RunDir); k != "net.inet6.ip6.keepfaith: 0" {
		t.Errorf("keepfaith after stop: %q, want it put back to 0 (sysctl_on_stop is about [sysctl] only)", k)
	}
	checkNothingLeft(t, lab, "after SIGTERM")

	// A failed start (faith1 taken by a veth) puts the sysctls back even so.
	if err := lab.Router.Sysctl("net.ipv6.conf.all.forwarding", "0"); err != nil {
		t.Fatal(err)
	}
	if err := lab.Router.Sysctl("net.ipv6.conf.default.hop_limit", hop0); err != nil {
		t.Fatal(err)
	}
	if _, err := lab.Router.IP("link", "add", "faith1", "type", "veth", "peer", "name", "faith1p"); err != nil {
		t.Fatal(err)
	}
	r := lab.Faithif("run", "--config", conf)
	if r.ExitCode != 1 || !strings.Contains(r.Stderr, "already exists") {
		t.Errorf("run with faith1 taken: %s; want exit 1, already exists", r)
	}
	for k, want := range map[string]string{"net.ipv6.conf.all.forwarding": "0", "net.ipv6.conf.default.hop_limit": hop0} {
		if v, err := lab.Router.ReadSysctl(k); err != nil || v != want {
			t.Errorf("sysctl %s = %q (%v) after a failed start, want %s (put back)", k, v, err, want)
		}
	}
}
