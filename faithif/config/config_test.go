package config

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/faithif/faithif/faithif"
	"github.com/faithif/faithif/faithif/dns64"
	"github.com/faithif/faithif/relay"
	"github.com/faithif/faithif/relay/flow"
)

func parse(t *testing.T, text string) (*Config, error) {
	t.Helper()
	return Parse("faithif.conf", []byte(text), nil)
}

func TestParseFull(t *testing.T) {
	dir := t.TempDir()
	rules := filepath.Join(dir, "faithd.conf")
	if err := os.WriteFile(rules, []byte("::/0 permit 0.0.0.0/0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := parse(t, `
keepfaith = true
metrics = "127.0.0.1:9464"
log_format = "json"
log_level = "debug"
sysctl_on_stop = "keep"
[sysctl]
"net.ipv6.conf.all.forwarding" = 1
"net.ipv4.ip_forward" = "1"
[[interface]]
name = "faith0"
prefixes = ["2001:db8:46::/96", "64:ff9b::/96"]
mtu = 1400
rules = "`+rules+`"
deny_with = "rst"
idle_timeout = "0s"
dial_timeout = "3s"
grace = "1s"
max_flows_per_client = 10
max_handshakes_per_client = 5
max_flows_per_address = 4
max_handshakes_per_address = 2
max_handshakes = 64
privileged_ports = [513, 514]
proxy_protocol_ports = [25]
ftp_ports = [21, 2121]
  [[interface.route]]
  prefix = "2001:db8:46::/96"
  metric = 50
  table = 100
  [[interface.route]]
  prefix = "64:ff9b::/96"
[[interface]]
name = "faith1"
prefixes = ["2001:db8:47::/96"]
`)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.KeepFaith == nil || !*cfg.KeepFaith || cfg.Metrics != "127.0.0.1:9464" || cfg.LogFormat != "json" || cfg.LogLevel != "debug" {
		t.Errorf("top level: %+v", cfg)
	}
	if len(cfg.Sysctls) != 2 || cfg.Sysctls[0].Key != "net.ipv6.conf.all.forwarding" || cfg.Sysctls[0].Value != "1" || cfg.Sysctls[0].Line != 8 || cfg.Sysctls[1].Value != "1" {
		t.Errorf("sysctls in file order: %+v", cfg.Sysctls)
	}
	if !cfg.KeepSysctls {
		t.Errorf("sysctl_on_stop = keep: KeepSysctls false")
	}
	if len(cfg.Interfaces) != 2 {
		t.Fatalf("interfaces: %+v", cfg.Interfaces)
	}
	f0, f1 := cfg.Interfaces[0], cfg.Interfaces[1]
	if f0.Name != "faith0" || f0.MTU != 1400 || f0.DenyWith != flow.RefuseReset || f0.IdleTimeout >= 0 ||
		f0.DialTimeout != 3*time.Second || f0.Grace != time.Second || f0.Rules != rules || f0.Line != 10 {
		t.Errorf("faith0: %+v", f0)
	}
	if want := (relay.Limits{MaxFlows: 10, MaxHandshakes: 5, MaxFlowsPerAddress: 4, MaxHandshakesPerAddress: 2, MaxHandshakesTotal: 64}); f0.Limits != want {
		t.Errorf("faith0 limits %+v; want %+v", f0.Limits, want)
	}
	if !slices.Equal(f0.PrivilegedPorts, []uint16{513, 514}) || !slices.Equal(f0.ProxyProtocolPorts, []uint16{25}) {
		t.Errorf("faith0 privileged ports %v, PROXY protocol ports %v; want [513 514], [25]", f0.PrivilegedPorts, f0.ProxyProtocolPorts)
	}
	if !slices.Equal(f0.FTPPorts, []uint16{21, 2121}) || !slices.Equal(f1.FTPPorts, []uint16{21}) {
		t.Errorf("ftp ports %v, %v; want [21 2121] and the default [21]", f0.FTPPorts, f1.FTPPorts)
	}
	want := []faithif.Route{{Prefix: netip.MustParsePrefix("2001:db8:46::/96"), Metric: 50, Table: 100}, {Prefix: netip.MustParsePrefix("64:ff9b::/96")}}
	if len(f0.Routes) != 2 || f0.Routes[0] != want[0] || f0.Routes[1] != want[1] {
		t.Errorf("faith0 routes: %+v", f0.Routes)
	}
	// Defaults.
	if f1.MTU != 1500 || f1.DenyWith != flow.RefuseProhibited || f1.IdleTimeout != relay.DefaultIdleTimeout ||
		f1.DialTimeout != relay.DefaultDialTimeout || f1.Grace != DefaultGrace || f1.Limits != relay.DefaultLimits() || len(f1.Routes) != 0 ||
		len(f1.PrivilegedPorts) != 0 || len(f1.ProxyProtocolPorts) != 0 {
		t.Errorf("faith1 defaults: %+v", f1)
	}
}

// TestParseDefaults: keepfaith left out leaves the switch alone.
func TestParseDefaults(t *testing.T) {
	cfg, err := parse(t, "[[interface]]\nname = \"faith3\"\nprefixes = [\"64:ff9b::/96\"]\n")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.KeepFaith != nil || cfg.Metrics != "" || cfg.LogFormat != "text" || cfg.LogLevel != "info" || len(cfg.Sysctls) != 0 {
		t.Errorf("%+v", cfg)
	}
}

// TestParseErrors: every error names the file, the line and the key.
// parseHead is a valid interface, lines 1-3.
const parseHead = "[[interface]]\nname = \"faith0\"\nprefixes = [\"64:ff9b::/96\"]\n"

// parseErrorCases are files Parse refuses and what each error says
// (TestParseErrors); they seed FuzzParse as well.
var parseErrorCases = func() []struct {
	name, text string
	want       []string // each must appear in the error
} {
	const head = parseHead
	return []struct {
		name, text string
		want       []string
	}{
		{"syntax", "keepfaith = \n", []string{"faithif.conf:1:"}},
		{"unclosed table", "[[interface]\n", []string{"faithif.conf:1:"}},
		{"unknown top key", "keepfath = true\n" + head, []string{"faithif.conf:1: keepfath: unknown key"}},
		{"unknown interface key", head + "mtux = 1400\n", []string{"faithif.conf:4: interface.mtux: unknown key"}},
		{"wrong type", head + "mtu = \"big\"\n", []string{"faithif.conf:4: interface.mtu:"}},
		{"keepfaith not bool", "keepfaith = 1\n" + head, []string{"faithif.conf:1: keepfaith:"}},
		{"no interface", "keepfaith = true\n", []string{"faithif.conf: interface: no [[interface]]"}},
		{"missing name", "[[interface]]\nprefixes = [\"64:ff9b::/96\"]\n", []string{"faithif.conf:1: interface.name: missing"}},
		{"bad name", "[[interface]]\nname = \"eth0\"\nprefixes = [\"64:ff9b::/96\"]\n", []string{"faithif.conf:2: interface.name:", "faith<N>"}},
		{"missing prefixes", "[[interface]]\nname = \"faith0\"\n", []string{"faithif.conf:1: interface.prefixes: missing"}},
		{"bad prefix", "[[interface]]\nname = \"faith0\"\nprefixes = [\"2001:db8::/33\"]\n", []string{"faithif.conf:3: interface.prefixes:", "2001:db8::/33"}},
		{"ipv4 prefix", "[[interface]]\nname = \"faith0\"\nprefixes = [\"192.0.2.0/24\"]\n", []string{"faithif.conf:3: interface.prefixes:"}},
		{"overlap in one", "[[interface]]\nname = \"faith0\"\nprefixes = [\"2001:db8::/96\", \"2001:db8::/64\"]\n", []string{"faithif.conf:3: interface.prefixes: prefix 2001:db8::/64 overlaps 2001:db8::/96"}},
		{"mtu", head + "mtu = 900\n", []string{"faithif.conf:4: interface.mtu: mtu 900"}},
		{"deny_with", head + "deny_with = \"drop\"\n", []string{"faithif.conf:4: interface.deny_with:"}},
		{"duration", head + "grace = \"soon\"\n", []string{"faithif.conf:4: interface.grace:", "not a duration"}},
		{"negative grace", head + "grace = \"-1s\"\n", []string{"faithif.conf:4: interface.grace: -1s"}},
		{"dial timeout zero", head + "dial_timeout = \"0s\"\n", []string{"faithif.conf:4: interface.dial_timeout:"}},
		{"negative idle", head + "idle_timeout = \"-5m\"\n", []string{"faithif.conf:4: interface.idle_timeout:"}},
		{"limits", head + "max_flows_per_client = 0\nmax_handshakes_per_client = -1\nmax_flows_per_address = 0\nmax_handshakes_per_address = 0\nmax_handshakes = 3\n",
			[]string{"faithif.conf:4: interface.max_flows_per_client", "faithif.conf:5: interface.max_handshakes_per_client",
				"faithif.conf:6: interface.max_flows_per_address: 0: must be at least 1", "faithif.conf:7: interface.max_handshakes_per_address",
				"faithif.conf:8: interface.max_handshakes: 3: must be at least 4"}},
		{"ftp ports", head + "ftp_ports = [0, 21, 21, 70000]\n", []string{"faithif.conf:4: interface.ftp_ports: port 0: must be between 1 and 65535",
			"faithif.conf:4: interface.ftp_ports: port 21 is listed twice", "faithif.conf:4: interface.ftp_ports: port 70000: must be"}},
		{"ftp ports type", head + "ftp_ports = \"21\"\n", []string{"faithif.conf:4: interface.ftp_ports: wrong type: TOML string, want a list of integers"}},
		{"max handshakes", head + "max_handshakes = 1000000\n", []string{"faithif.conf:4: interface.max_handshakes: 1000000: must be at most 65536"}},
		{"rules missing", head + "rules = \"/nonexistent/faithd.conf\"\n", []string{"faithif.conf:4: interface.rules:", "/nonexistent/faithd.conf"}},
		{"access_file missing", head + "access_file = \"/nonexistent/faithd.conf\"\n", []string{"faithif.conf:4: interface.access_file:", "/nonexistent/faithd.conf"}},
		{"access file twice", head + "access_file = \"/a.conf\"\nrules = \"/b.conf\"\n", []string{"faithif.conf:5: interface.rules: the access file is given twice, as access_file and as rules (its old name): keep access_file"}},
		{"log format", "log_format = \"xml\"\n" + head, []string{"faithif.conf:1: log_format:"}},
		{"log level", "log_level = \"loud\"\n" + head, []string{"faithif.conf:1: log_level:"}},
		{"metrics", "metrics = \"9464\"\n" + head, []string{"faithif.conf:1: metrics:"}},
		{"prefix twice", "[[interface]]\nname = \"faith0\"\nprefixes = [\"2001:db8::/96\", \"2001:db8::/96\"]\n", []string{"faithif.conf:3: interface.prefixes: prefix 2001:db8::/96 is listed twice"}},
		{"sysctl_on_stop", "sysctl_on_stop = \"forget\"\n" + head, []string{"faithif.conf:1: sysctl_on_stop: \"forget\": want restore (put the old values back on stop) or keep"}},
		{"metrics port", "metrics = \"127.0.0.1:99999\"\n" + head, []string{"faithif.conf:1: metrics:"}},
		{"sysctl missing", "[sysctl]\n\"net.ipv6.conf.all.no_such_thing\" = 1\n" + head, []string{"faithif.conf:2: sysctl.net.ipv6.conf.all.no_such_thing: no such kernel parameter"}},
		{"sysctl path", "[sysctl]\n\"net/../../etc\" = 1\n" + head, []string{"faithif.conf:2: sysctl.net/../../etc:", "not a sysctl name"}},
		{"sysctl dir", "[sysctl]\n\"net.ipv6\" = 1\n" + head, []string{"faithif.conf:2: sysctl.net.ipv6:", "group"}},
		{"sysctl value", "[sysctl]\n\"net.ipv6.conf.all.forwarding\" = [1]\n" + head, []string{"faithif.conf:2: sysctl.net.ipv6.conf.all.forwarding:"}},
		{"route outside", head + "[[interface.route]]\nprefix = \"2001:db8::/64\"\n", []string{"faithif.conf:5: interface.route.prefix:", "not inside"}},
		{"route host bits", head + "[[interface.route]]\nprefix = \"64:ff9b::1/96\"\n", []string{"faithif.conf:5: interface.route.prefix:", "host bits"}},
		{"route missing prefix", head + "[[interface.route]]\nmetric = 5\n", []string{"faithif.conf:4: interface.route.prefix: missing"}},
		{"route table", head + "[[interface.route]]\nprefix = \"64:ff9b::/96\"\ntable = 255\n", []string{"faithif.conf:6: interface.route.table:"}},
		{"route metric", head + "[[interface.route]]\nprefix = \"64:ff9b::/96\"\nmetric = -1\n", []string{"faithif.conf:6: interface.route.metric:"}},
		{"route twice", head + "[[interface.route]]\nprefix = \"64:ff9b::/96\"\n[[interface.route]]\nprefix = \"64:ff9b::/96\"\n", []string{"faithif.conf:7: interface.route.prefix: route 64:ff9b::/96 is listed twice"}},
		{"duplicate name", head + head, []string{"faithif.conf:5: interface.name: faith0 is configured twice (first at line 2)"}},
		{"overlap across", head + "[[interface]]\nname = \"faith1\"\nprefixes = [\"64:ff9b::/96\"]\n", []string{"faithif.conf:6: interface.prefixes: prefix 64:ff9b::/96 overlaps 64:ff9b::/96 (line 3)"}},
		{"privileged port range", head + "privileged_ports = [513, 0, 70000]\n", []string{"faithif.conf:4: interface.privileged_ports: port 0: must be between 1 and 65535", "faithif.conf:4: interface.privileged_ports: port 70000"}},
		{"privileged port twice", head + "privileged_ports = [513, 513]\n", []string{"faithif.conf:4: interface.privileged_ports: port 513 is listed twice"}},
		{"proxy ports type", head + "proxy_protocol_ports = 25\n", []string{"faithif.conf:4: interface.proxy_protocol_ports: wrong type: TOML integer, want a list of integers"}},
		{"proxy ports strings", head + "proxy_protocol_ports = [\"smtp\"]\n", []string{"faithif.conf:4: interface.proxy_protocol_ports"}},
		{"every error", "log_level = \"loud\"\n" + head + "mtu = 1\n", []string{"faithif.conf:1: log_level", "faithif.conf:5: interface.mtu"}},
	}
}()

func TestParseErrors(t *testing.T) {
	for _, tc := range parseErrorCases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := parse(t, tc.text)
			if err == nil {
				t.Fatalf("accepted: %+v", cfg)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestRouteIndexRestartsPerInterface(t *testing.T) {
	_, err := parse(t, `[[interface]]
name = "faith0"
prefixes = ["2001:db8:46::/96"]
[[interface.route]]
prefix = "2001:db8:46::/96"
[[interface]]
name = "faith1"
prefixes = ["2001:db8:47::/96"]
[[interface.route]]
prefix = "2001:db8:47::/96"
table = 255
`)
	if err == nil || !strings.Contains(err.Error(), "faithif.conf:11: interface.route.table") {
		t.Fatalf("want the second interface's first route at line 11, got %v", err)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load("/nonexistent/faithif.conf", nil)
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/faithif.conf") {
		t.Fatalf("got %v", err)
	}
}

// TestExample: the documented example in deploy/ is valid.
func TestExample(t *testing.T) {
	data, err := os.ReadFile("../../deploy/faithif.conf")
	if err != nil {
		t.Fatal(err)
	}
	// The example's access file is the one shipped next to it.
	data = []byte(strings.ReplaceAll(string(data), "/etc/faithif/faithd.conf", "../../deploy/faithd.conf"))
	cfg, err := Parse("faithif.conf", data, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Interfaces) != 1 || cfg.Interfaces[0].Name != "faith0" || len(cfg.Interfaces[0].Routes) != 1 || cfg.Interfaces[0].DNS64 != nil {
		t.Errorf("%+v", cfg)
	}
	// Its commented [interface.dns64] table, taken in, is valid too.
	text := regexp.MustCompile(`(?m)^#(  (\[interface\.dns64\]|[a-z_]+ = ))`).ReplaceAllString(string(data), "$1")
	cfg, err = Parse("faithif.conf", []byte(text), nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := cfg.Interfaces[0].DNS64; d == nil || len(d.Listen) != 1 || len(d.Upstreams) != 2 || d.Prefix != relay.WellKnownPrefix {
		t.Errorf("the example's DNS64: %+v", d)
	}
}

// FuzzParse checks that no file crashes Parse, that a file it accepts has
// an interface, and that every error names the file and, for anything in
// it, the line: each is an *Error printed "f:LINE: KEY: ...", LINE within
// the file. Only a key left out ("missing", "no [[interface]]") may have
// no line of its own. Seeds: the shipped example (with its commented DNS64 section on and
// off), the valid files of this file's tests, every TestParseErrors case.
func FuzzParse(f *testing.F) {
	f.Add([]byte(parseHead + "[[interface.route]]\nprefix = \"64:ff9b::/96\"\n"))
	f.Add([]byte("keepfaith = true\n[sysctl]\n\"net.ipv4.ip_forward\" = 1\n"))
	f.Add([]byte(parseHead + "mtu = 1400\ngrace = \"5s\"\nidle_timeout = \"2m\"\ndeny_with = \"rst\"\nftp_ports = [21]\n[interface.dns64]\nlisten = [\"[2001:db8::53]:53\"]\nupstreams = [\"192.0.2.53:53\"]\n"))
	if data, err := os.ReadFile("../../deploy/faithif.conf"); err == nil {
		f.Add(data)
		f.Add(regexp.MustCompile(`(?m)^#(  (\[interface\.dns64\]|[a-z_]+ = ))`).ReplaceAll(data, []byte("$1")))
	} else {
		f.Fatal(err)
	}
	for _, tc := range parseErrorCases {
		f.Add([]byte(tc.text))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("f", data, nil)
		if err == nil {
			if len(cfg.Interfaces) == 0 {
				t.Fatal("accepted a file without interfaces")
			}
			return
		}
		lines := bytes.Count(data, []byte("\n")) + 1
		errs := []error{err}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			errs = j.Unwrap()
		}
		for _, e := range errs {
			var ce *Error
			if !errors.As(e, &ce) {
				t.Fatalf("error %q (%T) is not a config.Error naming the file", e, e)
			}
			if ce.File != "f" || !strings.HasPrefix(e.Error(), "f:") {
				t.Fatalf("error %q does not name the file f", e)
			}
			if ce.Line > 0 {
				if ce.Line > lines || !strings.HasPrefix(e.Error(), fmt.Sprintf("f:%d: ", ce.Line)) {
					t.Fatalf("error %q: line %d of a %d-line file", e, ce.Line, lines)
				}
				continue
			}
			// Only something left out may have no line of its own (the
			// checker points at its table when it can find one).
			if !strings.HasPrefix(ce.Msg, "missing") && !strings.HasPrefix(ce.Msg, "no [[interface]]") {
				t.Fatalf("error %q names no line", e)
			}
		}
	})
}

// TestFromFlags: create's flags go through the file's checks, and each
// error names the flag instead of a line and key.
func TestFromFlags(t *testing.T) {
	str := func(s string) *string { return &s }
	num := func(n int) *int { return &n }
	good := InterfaceSettings{Name: "faith0", Prefixes: []string{"64:ff9b::/96"}}
	cfg, err := FromFlags(&Settings{Interface: []InterfaceSettings{good}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	in := cfg.Interfaces[0]
	if in.MTU != 1500 || in.Grace != DefaultGrace || in.DenyWith != flow.RefuseProhibited || cfg.LogLevel != "info" ||
		in.PrivilegedPorts != nil || in.ProxyProtocolPorts != nil {
		t.Errorf("defaults: %+v", cfg)
	}
	ports := good
	ports.PrivilegedPortsFlag, ports.ProxyProtocolPortsFlag = str(" 513, 514"), str("none")
	if cfg, err := FromFlags(&Settings{Interface: []InterfaceSettings{ports}}, nil); err != nil {
		t.Fatal(err)
	} else if in := cfg.Interfaces[0]; !slices.Equal(in.PrivilegedPorts, []uint16{513, 514}) || len(in.ProxyProtocolPorts) != 0 {
		t.Errorf("--privileged-ports ' 513, 514' --proxy-protocol-ports none: %v, %v", in.PrivilegedPorts, in.ProxyProtocolPorts)
	}
	if !slices.Equal(in.FTPPorts, []uint16{21}) {
		t.Errorf("default ftp ports %v, want [21]", in.FTPPorts)
	}
	for flag, want := range map[string][]uint16{"21, 2121": {21, 2121}, "none": {}, "": {}, "990": {990}} {
		s := good
		s.FTPPortsFlag = str(flag)
		cfg, err := FromFlags(&Settings{Interface: []InterfaceSettings{s}}, nil)
		if err != nil || !slices.Equal(cfg.Interfaces[0].FTPPorts, want) {
			t.Errorf("--ftp-ports %q: %v, %v; want %v", flag, cfg, err, want)
		}
	}
	for _, tc := range []struct {
		name string
		edit func(*Settings)
		want string
	}{
		{"mtu", func(s *Settings) { s.Interface[0].MTU = num(100) }, "--mtu: mtu 100: must be between"},
		{"prefix", func(s *Settings) { s.Interface[0].Prefixes = []string{"nonsense"} }, `--prefix: prefix "nonsense": not an IPv6 prefix`},
		{"overlap", func(s *Settings) { s.Interface[0].Prefixes = []string{"2001:db8::/32", "2001:db8:46::/96"} }, "--prefix: prefix 2001:db8:46::/96 overlaps 2001:db8::/32"},
		{"grace", func(s *Settings) { s.Interface[0].Grace = str("soon") }, `--grace: "soon" is not a duration`},
		{"dial", func(s *Settings) { s.Interface[0].DialTimeout = str("0s") }, "--dial-timeout: 0s: must be positive"},
		{"idle", func(s *Settings) { s.Interface[0].IdleTimeout = str("-1s") }, "--idle-timeout: -1s: must not be negative"},
		{"deny", func(s *Settings) { s.Interface[0].DenyWith = "drop" }, `--deny-with: "drop": want icmp6 or rst`},
		{"flows", func(s *Settings) { s.Interface[0].MaxFlowsPerClient = num(0) }, "--max-flows-per-client: 0: must be at least 1"},
		{"handshakes", func(s *Settings) { s.Interface[0].MaxHandshakesPerClient = num(0) }, "--max-handshakes-per-client: 0: must be at least 1"},
		{"flows per address", func(s *Settings) { s.Interface[0].MaxFlowsPerAddress = num(-1) }, "--max-flows-per-address: -1: must be at least 1"},
		{"handshakes per address", func(s *Settings) { s.Interface[0].MaxHandshakesPerAddress = num(0) }, "--max-handshakes-per-address: 0: must be at least 1"},
		{"max handshakes", func(s *Settings) { s.Interface[0].MaxHandshakes = num(2) }, "--max-handshakes: 2: must be at least 4"},
		{"log level", func(s *Settings) { s.LogLevel = "loud" }, `--log-level: "loud": want debug`},
		{"log format", func(s *Settings) { s.LogFormat = "xml" }, `--log-format: "xml": want text or json`},
		{"metrics", func(s *Settings) { s.Metrics = "9464" }, `--metrics: "9464": want HOST:PORT`},
		{"name", func(s *Settings) { s.Interface[0].Name = "eth0" }, `interface name "eth0": must be faith<N>`},
		{"privileged ports", func(s *Settings) { s.Interface[0].PrivilegedPortsFlag = str("513,rsh") }, `--privileged-ports: "rsh" is not a port number (want e.g. 513,514, or none)`},
		{"privileged port range", func(s *Settings) { s.Interface[0].PrivilegedPortsFlag = str("65536") }, "--privileged-ports: port 65536: must be between 1 and 65535"},
		{"proxy ports twice", func(s *Settings) { s.Interface[0].ProxyProtocolPortsFlag = str("80, 80") }, "--proxy-protocol-ports: port 80 is listed twice"},
		{"rules", func(s *Settings) { s.Interface[0].AccessFile = "/nonexistent/faithd.conf" }, "--access: rules: open /nonexistent/faithd.conf"},
		{"ftp ports", func(s *Settings) { s.Interface[0].FTPPortsFlag = str("21,ftp") }, `--ftp-ports: "ftp" is not a port number (want e.g. 21,2121, or none)`},
		{"ftp port range", func(s *Settings) { s.Interface[0].FTPPortsFlag = str("21,65536") }, "--ftp-ports: port 65536: must be between 1 and 65535"},
		{"ftp port twice", func(s *Settings) { s.Interface[0].FTPPortsFlag = str("21,21") }, "--ftp-ports: port 21 is listed twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &Settings{Interface: []InterfaceSettings{good}}
			s.Interface[0].Prefixes = append([]string(nil), good.Prefixes...)
			tc.edit(s)
			_, err := FromFlags(s, nil)
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("error %v; want it to start %q", err, tc.want)
			}
			var ce *Error
			if !errors.As(err, &ce) || ce.Content != (tc.name == "rules") || ce.File != "" {
				t.Errorf("error %#v: Content should be set only for the access file's problems, File never", ce)
			}
		})
	}
}

// TestDNS64: an [interface.dns64] table, in full and with its defaults.
func TestDNS64(t *testing.T) {
	cfg, err := parse(t, `
[[interface]]
name = "faith0"
prefixes = ["2001:db8:46::/96", "2001:db8:47::/96"]
  [interface.dns64]
  listen = ["[2001:db8:1::1]:53", "192.0.2.1"]
  upstreams = ["192.0.2.53", "[2001:db8:53::53]:5353"]
  prefix = "2001:db8:47::/96"
  exclude = ["2001:db8:bad::/48"]
  synthall = true
  allow = ["localnets", "2001:db8:5::/48", "192.0.2.9"]
  rate_limit = 0
  cache_size = 50
  timeout = "500ms"
[[interface]]
name = "faith1"
prefixes = ["2001:db8:48::/96"]
  [interface.dns64]
  listen = ["[2001:db8:1::1]:5353"]
  upstreams = ["192.0.2.53"]
`)
	if err != nil {
		t.Fatal(err)
	}
	d := cfg.Interfaces[0].DNS64
	aps := func(ss ...string) []netip.AddrPort {
		var out []netip.AddrPort
		for _, s := range ss {
			out = append(out, netip.MustParseAddrPort(s))
		}
		return out
	}
	if d == nil || !slices.Equal(d.Listen, aps("[2001:db8:1::1]:53", "192.0.2.1:53")) || !slices.Equal(d.Upstreams, aps("192.0.2.53:53", "[2001:db8:53::53]:5353")) ||
		d.Prefix != netip.MustParsePrefix("2001:db8:47::/96") || len(d.Exclude) != 1 || !d.SynthAll || !d.AllowLocalNets ||
		!slices.Equal(d.Allow, []netip.Prefix{netip.MustParsePrefix("2001:db8:5::/48"), netip.MustParsePrefix("192.0.2.9/32")}) ||
		d.RateLimit != 0 || d.CacheSize != 50 || d.Timeout != 500*time.Millisecond {
		t.Errorf("faith0 dns64: %+v", d)
	}
	d = cfg.Interfaces[1].DNS64
	if d == nil || d.Prefix != netip.MustParsePrefix("2001:db8:48::/96") || !d.AllowLocalNets || len(d.Allow) != 0 || d.SynthAll ||
		d.RateLimit != dns64.DefaultRateLimit || d.CacheSize != dns64.DefaultCacheSize || d.Timeout != dns64.DefaultTimeout {
		t.Errorf("faith1 dns64 defaults: %+v", d)
	}
	var plan strings.Builder
	cfg.WritePlan(&plan)
	for _, w := range []string{"dns64 on [[2001:db8:1::1]:53 192.0.2.1:53] (udp, tcp), prefix 2001:db8:47::/96, upstreams [192.0.2.53:53 [2001:db8:53::53]:5353], clients [localnets 2001:db8:5::/48 192.0.2.9/32]"} {
		if !strings.Contains(plan.String(), w) {
			t.Errorf("plan %q lacks %q", plan.String(), w)
		}
	}
	if cfg, _ := parse(t, "[[interface]]\nname = \"faith0\"\nprefixes = [\"64:ff9b::/96\"]\n"); cfg.Interfaces[0].DNS64 != nil {
		t.Error("no [interface.dns64]: a responder anyway")
	}
}

// TestDNS64Errors: every error names the file, line and key.
func TestDNS64Errors(t *testing.T) {
	const head = "[[interface]]\nname = \"faith0\"\nprefixes = [\"2001:db8:46::/96\"]\n[interface.dns64]\n" // lines 1-4
	const ok = "listen = [\"[2001:db8:1::1]:53\"]\nupstreams = [\"192.0.2.53\"]\n"                          // lines 5-6
	for _, tc := range []struct {
		name, text string
		want       []string
	}{
		{"empty table", head, []string{"faithif.conf:4: interface.dns64.listen: missing: the addresses to answer on, e.g. listen = [", "faithif.conf:4: interface.dns64.upstreams: missing"}},
		{"unknown key", head + ok + "listen_on = 1\n", []string{"faithif.conf:7: interface.dns64.listen_on: unknown key"}},
		{"wrong type", head + "listen = \"[2001:db8:1::1]:53\"\n", []string{"faithif.conf:5: interface.dns64.listen: wrong type"}},
		{"not a table", "[[interface]]\nname = \"faith0\"\nprefixes = [\"2001:db8:46::/96\"]\ndns64 = true\n", []string{"faithif.conf:4: interface.dns64: wrong type: TOML boolean, want an [interface.dns64] table"}},
		{"listen", head + "listen = [\"[2001:db8:1::1]:0\", \"ns.example\", \"ff02::1\"]\nupstreams = [\"192.0.2.53\"]\n",
			[]string{`faithif.conf:5: interface.dns64.listen: "[2001:db8:1::1]:0": port "0"`, `faithif.conf:5: interface.dns64.listen: "ns.example"`, "multicast"}},
		{"listen twice", head + "listen = [\"192.0.2.1\", \"192.0.2.1:53\"]\nupstreams = [\"192.0.2.53\"]\n", []string{"faithif.conf:5: interface.dns64.listen: 192.0.2.1:53 is listed twice"}},
		{"upstream", head + "listen = [\"192.0.2.1\"]\nupstreams = [\"::\", \"192.0.2.1\", \"2001:db8:46::1\", \"192.0.2.53\", \"192.0.2.53:53\"]\n", []string{
			`faithif.conf:6: interface.dns64.upstreams: "::": not a unicast address`,
			"faithif.conf:6: interface.dns64.upstreams: 192.0.2.1:53 is a listen address: the responder would ask itself",
			"faithif.conf:6: interface.dns64.upstreams: [2001:db8:46::1]:53 is inside the FAITH prefix 2001:db8:46::/96",
			"faithif.conf:6: interface.dns64.upstreams: 192.0.2.53:53 is listed twice"}},
		{"prefix", head + ok + "prefix = \"2001:db8:47::/96\"\n", []string{"faithif.conf:7: interface.dns64.prefix: 2001:db8:47::/96 is not one of the interface's prefixes [2001:db8:46::/96]"}},
		{"bad prefix", head + ok + "prefix = \"2001:db8:47::/97\"\n", []string{"faithif.conf:7: interface.dns64.prefix: prefix \"2001:db8:47::/97\""}},
		{"exclude", head + ok + "exclude = [\"192.0.2.0/24\", \"2001:db8:bad::1/48\"]\n", []string{`faithif.conf:7: interface.dns64.exclude: "192.0.2.0/24" is not an IPv6 prefix`, "2001:db8:bad::1/48 has host bits set (did you mean 2001:db8:bad::/48?)"}},
		{"allow", head + ok + "allow = [\"everyone\", \"2001:db8:1::1/64\", \"::ffff:192.0.2.0/120\"]\n", []string{`faithif.conf:7: interface.dns64.allow: "everyone": want a prefix`, "2001:db8:1::1/64 has host bits set", "an IPv4-mapped prefix"}},
		{"allow empty", head + ok + "allow = []\n", []string{`faithif.conf:7: interface.dns64.allow: empty: no client could ask (leave it out for "localnets"`}},
		{"numbers", head + ok + "rate_limit = -1\ncache_size = 100000000\n", []string{"faithif.conf:7: interface.dns64.rate_limit: -1: must be between 0 (no limit) and 1000000", "faithif.conf:8: interface.dns64.cache_size: 100000000: must be between 0 (no cache)"}},
		{"timeout", head + ok + "timeout = \"1h\"\n", []string{"faithif.conf:7: interface.dns64.timeout: 1h0m0s: must be positive and at most 30s"}},
		{"timeout syntax", head + ok + "timeout = \"soon\"\n", []string{`faithif.conf:7: interface.dns64.timeout: "soon" is not a duration`}},
		{"listen clash", head + ok + "[[interface]]\nname = \"faith1\"\nprefixes = [\"2001:db8:47::/96\"]\n[interface.dns64]\nlisten = [\"[::]:53\"]\nupstreams = [\"192.0.2.53\"]\n",
			[]string{"faithif.conf:11: interface.dns64.listen: [::]:53: another interface's DNS64 listens on [2001:db8:1::1]:53 (line 5)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := parse(t, tc.text)
			if err == nil {
				t.Fatalf("accepted: %+v", cfg)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// TestDNS64Flags: create's --dns64 flags are checked as the table is, each
// error naming its flag.
func TestDNS64Flags(t *testing.T) {
	str := func(s string) *string { return &s }
	num := func(n int) *int { return &n }
	good := func() *DNS64Settings {
		return &DNS64Settings{Listen: []string{"[2001:db8:1::1]:53"}, Upstreams: []string{"192.0.2.53"}}
	}
	for _, tc := range []struct {
		name string
		edit func(*DNS64Settings)
		want string
	}{
		{"listen", func(d *DNS64Settings) { d.Listen = nil }, "--dns64: missing: the addresses to answer on, e.g. --dns64 [2001:db8:1::1]:53"},
		{"upstream", func(d *DNS64Settings) { d.Upstreams = nil }, "--dns64-upstream: missing: the resolvers to ask, e.g. --dns64-upstream 192.0.2.53"},
		{"prefix", func(d *DNS64Settings) { d.Prefix = "2001:db8:47::/96" }, "--dns64-prefix: 2001:db8:47::/96 is not one of"},
		{"exclude", func(d *DNS64Settings) { d.Exclude = []string{"x"} }, `--dns64-exclude: "x" is not an IPv6 prefix`},
		{"allow", func(d *DNS64Settings) { d.Allow = []string{} }, "--dns64-allow: empty"},
		{"rate", func(d *DNS64Settings) { d.RateLimit = num(-5) }, "--dns64-rate-limit: -5"},
		{"cache", func(d *DNS64Settings) { d.CacheSize = num(-1) }, "--dns64-cache-size: -1"},
		{"timeout", func(d *DNS64Settings) { d.Timeout = str("0s") }, "--dns64-timeout: 0s: must be positive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := good()
			tc.edit(d)
			s := &Settings{Interface: []InterfaceSettings{{Name: "faith0", Prefixes: []string{"2001:db8:46::/96"}, DNS64: d}}}
			_, err := FromFlags(s, nil)
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("error %v; want it to start %q", err, tc.want)
			}
		})
	}
	s := &Settings{Interface: []InterfaceSettings{{Name: "faith0", Prefixes: []string{"2001:db8:46::/96"}, DNS64: good()}}}
	cfg, err := FromFlags(s, nil)
	if err != nil || cfg.Interfaces[0].DNS64 == nil || cfg.Interfaces[0].DNS64.Prefix != netip.MustParsePrefix("2001:db8:46::/96") {
		t.Fatalf("good flags: %+v, %v", cfg, err)
	}
}
