package config

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/faithif/faithif/faithif"
	"github.com/faithif/faithif/faithif/dns64"
	"github.com/faithif/faithif/relay"
	"github.com/faithif/faithif/relay/flow"
	"github.com/faithif/faithif/relay/ftp"
)

// MaxHandshakesLimit is the largest max_handshakes accepted: the stack's
// table of flows being set up grows to it under a SYN flood.
const MaxHandshakesLimit = 65536

// Defaults for keys left out (the limits' are relay.DefaultLimits).
const (
	DefaultGrace     = 10 * time.Second
	DefaultLogFormat = "text"
	DefaultLogLevel  = "info"
)

// Config is a loaded and checked faithif.conf.
type Config struct {
	// File is the path the configuration was read from.
	File string
	// KeepFaith, if set, is the value net.inet6.ip6.keepfaith is given at
	// start; nil leaves the global switch as it is.
	KeepFaith *bool
	// Metrics is the address Prometheus metrics, /healthz and /readyz are
	// served on; empty: not served.
	Metrics string
	// LogFormat is "text" or "json"; LogLevel is debug, info, warn or error.
	LogFormat, LogLevel string
	// Sysctls are set at start, in file order, and put back on stop unless
	// KeepSysctls.
	Sysctls []Sysctl
	// KeepSysctls leaves the sysctls as set when the appliance stops
	// (sysctl_on_stop = "keep", for hosts whose sysctls sysctl.d manages);
	// by default ("restore") they are put back. A start that fails puts
	// them back either way.
	KeepSysctls bool
	// Interfaces are created at start, in file order.
	Interfaces []Interface
}

// Sysctl is one kernel parameter the router needs, such as
// net.ipv6.conf.all.forwarding = 1.
type Sysctl struct {
	Key   string // dotted, as sysctl(8) names it
	Value string
	Line  int
}

// Interface is one faithN to create.
type Interface struct {
	Name     string
	Prefixes []netip.Prefix
	MTU      int
	// Routes are installed through netlink once the interface is up and
	// removed when it goes.
	Routes []faithif.Route
	// Rules is the faithd.conf access file; empty: none, permit every
	// mappable destination (a file with no rule denies every flow).
	Rules string
	// RuleSet is the access file as it was read when checked; nil
	// without one.
	RuleSet     *relay.Rules
	DenyWith    flow.Refusal
	IdleTimeout time.Duration // negative: never
	DialTimeout time.Duration
	Grace       time.Duration
	Limits      relay.Limits
	// FTPPorts are the destination ports whose flows the FTP relay
	// carries (relay/ftp); empty: none.
	FTPPorts []uint16
	// DNS64 is the interface's DNS64 responder ([interface.dns64],
	// create --dns64); nil: none.
	DNS64 *dns64.Config
	// PrivilegedPorts are the destination ports whose IPv4 connections
	// come from a reserved source port (600-1023, faithd -p); empty: none.
	PrivilegedPorts []uint16
	// ProxyProtocolPorts are the destination ports whose IPv4 connections
	// start with a PROXY protocol v2 header; empty: none.
	ProxyProtocolPorts []uint16
	Line               int // of its [[interface]] header
}

// Error is one problem in a configuration file, or in create's flags.
type Error struct {
	File string
	Line int    // 0: the file as a whole
	Key  string // dotted TOML key, e.g. interface.mtu
	// Flag is the command-line flag the setting came from (FromFlags),
	// e.g. --mtu; File, Line and Key are then empty.
	Flag string
	// Content is true when the problem is inside a file the setting
	// names (an access file), not in the setting itself.
	Content bool
	Msg     string
}

// Error implements error: "FILE:LINE: KEY: MSG", or "FLAG: MSG" for a
// flag.
func (e *Error) Error() string {
	if e.File == "" {
		if e.Flag == "" {
			return e.Msg
		}
		return e.Flag + ": " + e.Msg
	}
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Settings is faithif.conf as TOML decodes it, or create's flags as they
// are given, before checking.
type Settings struct {
	KeepFaith *bool          `toml:"keepfaith"`
	Metrics   string         `toml:"metrics"`
	LogFormat string         `toml:"log_format"`
	LogLevel  string         `toml:"log_level"`
	Sysctl    map[string]any `toml:"sysctl"`
	// SysctlOnStop is "restore" (the default) or "keep".
	SysctlOnStop string              `toml:"sysctl_on_stop"`
	Interface    []InterfaceSettings `toml:"interface"`
}

// InterfaceSettings is one [[interface]] table before checking.
type InterfaceSettings struct {
	Name     string          `toml:"name"`
	Prefixes []string        `toml:"prefixes"`
	MTU      *int            `toml:"mtu"`
	Route    []RouteSettings `toml:"route"`
	// AccessFile is the faithd.conf access file; Rules is its old name,
	// still read (not both).
	AccessFile              string         `toml:"access_file"`
	Rules                   string         `toml:"rules"`
	DenyWith                string         `toml:"deny_with"`
	IdleTimeout             *string        `toml:"idle_timeout"`
	DialTimeout             *string        `toml:"dial_timeout"`
	Grace                   *string        `toml:"grace"`
	MaxFlowsPerClient       *int           `toml:"max_flows_per_client"`
	MaxHandshakesPerClient  *int           `toml:"max_handshakes_per_client"`
	MaxFlowsPerAddress      *int           `toml:"max_flows_per_address"`
	MaxHandshakesPerAddress *int           `toml:"max_handshakes_per_address"`
	MaxHandshakes           *int           `toml:"max_handshakes"`
	DNS64                   *DNS64Settings `toml:"dns64"`
	PrivilegedPorts         *[]int         `toml:"privileged_ports"`
	ProxyProtocolPorts      *[]int         `toml:"proxy_protocol_ports"`
	// PrivilegedPortsFlag and ProxyProtocolPortsFlag are create's
	// --privileged-ports and --proxy-protocol-ports as given ("513,514",
	// "none"), checked as the keys are.
	PrivilegedPortsFlag    *string `toml:"-"`
	ProxyProtocolPortsFlag *string `toml:"-"`
	// FTPPorts lists the FTP control ports; nil: [21], empty: none.
	FTPPorts *[]int `toml:"ftp_ports"`
	// FTPPortsFlag is --ftp-ports as given ("21,2121", "none"), checked
	// as ftp_ports is.
	FTPPortsFlag *string `toml:"-"`
}

// DNS64Settings is one [interface.dns64] table before checking.
type DNS64Settings struct {
	Listen    []string `toml:"listen"`
	Upstreams []string `toml:"upstreams"`
	Prefix    string   `toml:"prefix"`
	Exclude   []string `toml:"exclude"`
	SynthAll  bool     `toml:"synthall"`
	// Allow is nil for the default, ["localnets"].
	Allow     []string `toml:"allow"`
	RateLimit *int     `toml:"rate_limit"`
	CacheSize *int     `toml:"cache_size"`
	Timeout   *string  `toml:"timeout"`
}

// RouteSettings is one [[interface.route]] table before checking.
type RouteSettings struct {
	Prefix string `toml:"prefix"`
	Metric *int   `toml:"metric"`
	Table  *int   `toml:"table"`
}

// Load reads and checks the configuration at path. isLocal reports the
// router's own IPv4 addresses, for checking BIND4 in access files (nil:
// none is). Nothing on the system is changed.
func Load(path string, isLocal func(netip.Addr) bool) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, data, isLocal)
}

// Parse checks the configuration in data, read from the file name.
func Parse(name string, data []byte, isLocal func(netip.Addr) bool) (*Config, error) {
	var f Settings
	dec := toml.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, decodeError(name, err)
	}
	lines, err := indexLines(data)
	if err != nil {
		return nil, &Error{File: name, Msg: err.Error()}
	}
	c := checker{file: name, lines: lines, isLocal: isLocal}
	cfg := c.check(&f)
	if len(c.errs) > 0 {
		return nil, errors.Join(c.errs...)
	}
	return cfg, nil
}

// decodeError turns go-toml's errors into Errors with file, line and key.
func decodeError(name string, err error) error {
	var de *toml.DecodeError
	var se *toml.StrictMissingError
	switch {
	case errors.As(err, &se):
		var errs []error
		for _, e := range se.Errors {
			row, _ := e.Position()
			errs = append(errs, &Error{File: name, Line: row, Key: strings.Join(e.Key(), "."), Msg: "unknown key"})
		}
		return errors.Join(errs...)
	case errors.As(err, &de):
		row, _ := de.Position()
		msg := strings.TrimPrefix(de.Error(), "toml: ")
		if m := typeErrorRE.FindStringSubmatch(msg); m != nil && goTypeNames[m[2]] != "" {
			msg = fmt.Sprintf("wrong type: TOML %s, want %s", m[1], goTypeNames[m[2]])
		}
		return &Error{File: name, Line: row, Key: strings.Join(de.Key(), "."), Msg: msg}
	}
	return &Error{File: name, Msg: err.Error()}
}

// typeErrorRE matches go-toml's type mismatch message, which names Go types.
var typeErrorRE = regexp.MustCompile(`^cannot decode TOML (\w+) into (?:struct field \S+ of type |a Go value of type )?(\S+)`)

// goTypeNames says in the file's terms what a Go field type wants.
var goTypeNames = map[string]string{
	"int": "an integer", "*int": "an integer", "string": "a string", "*string": "a string",
	"bool": "true or false", "*bool": "true or false", "[]string": "a list of strings", "*[]int": "a list of integers", "[]int": "a list of integers",
	"[]config.InterfaceSettings": "[[interface]] tables", "[]config.RouteSettings": "[[interface.route]] tables",
	"config.DNS64Settings": "an [interface.dns64] table", "*config.DNS64Settings": "an [interface.dns64] table",
	"map[string]interface {}": "a table",
}

// InFile reports whether err holds an Error about the contents of a file a
// setting names (Content), rather than about a setting itself.
func InFile(err error) bool {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			if InFile(e) {
				return true
			}
		}
		return false
	}
	var ce *Error
	return errors.As(err, &ce) && ce.Content
}

// FromFlags checks the settings of `faithif create`'s flags (one
// interface) with the same rules as a file's. Each error names the flag
// instead of a line and key: "--mtu: mtu 100: must be ...".
func FromFlags(s *Settings, isLocal func(netip.Addr) bool) (*Config, error) {
	c := checker{flags: true, isLocal: isLocal}
	cfg := c.check(s)
	if len(c.errs) > 0 {
		return nil, errors.Join(c.errs...)
	}
	return cfg, nil
}

// checker checks decoded settings and collects every error.
type checker struct {
	file    string
	flags   bool // the settings are create's flags: errors name flags
	lines   lineIndex
	isLocal func(netip.Addr) bool
	errs    []error
}

// flagNames are the create flags whose name is not their key's.
var flagNames = map[string]string{
	"interface.name":             "", // the interface argument itself
	"interface.prefixes":         "--prefix",
	"interface.access_file":      "--access",
	"interface.rules":            "--access",
	"interface.dns64":            "--dns64",
	"interface.dns64.listen":     "--dns64",
	"interface.dns64.upstreams":  "--dns64-upstream",
	"interface.dns64.prefix":     "--dns64-prefix",
	"interface.dns64.exclude":    "--dns64-exclude",
	"interface.dns64.synthall":   "--dns64-synthall",
	"interface.dns64.allow":      "--dns64-allow",
	"interface.dns64.rate_limit": "--dns64-rate-limit",
	"interface.dns64.cache_size": "--dns64-cache-size",
	"interface.dns64.timeout":    "--dns64-timeout",
}

// flagName returns the create flag of a key: interface.dial_timeout is
// --dial-timeout, log_level --log-level, a route's key --route.
func flagName(key string) string {
	if strings.HasPrefix(key, "interface.route") {
		return "--route"
	}
	if f, ok := flagNames[key]; ok {
		return f
	}
	return "--" + strings.ReplaceAll(strings.TrimPrefix(key, "interface."), "_", "-")
}

// errorf records an error at the line of path (as indexLines names keys,
// e.g. "interface[1].mtu"); key is path without the array indexes.
func (c *checker) errorf(path, format string, args ...any) {
	c.add(path, &Error{Msg: fmt.Sprintf(format, args...)})
}

// add records e, located at path: a line and key in a file, or a flag.
func (c *checker) add(path string, e *Error) {
	if c.flags {
		e.Flag = flagName(stripIndexes(path))
		c.errs = append(c.errs, e)
		return
	}
	line := c.lines.at(path)
	for p := path; line == 0 && p != ""; {
		// A key left out: point at the table it belongs in.
		i := strings.LastIndexByte(p, '.')
		if i < 0 {
			break
		}
		p = p[:i]
		line = c.lines.at(p)
	}
	e.File, e.Line, e.Key = c.file, line, stripIndexes(path)
	c.errs = append(c.errs, e)
}

func (c *checker) check(f *Settings) *Config {
	cfg := &Config{File: c.file, KeepFaith: f.KeepFaith, Metrics: f.Metrics, LogFormat: f.LogFormat, LogLevel: f.LogLevel}
	if cfg.LogFormat == "" {
		cfg.LogFormat = DefaultLogFormat
	} else if cfg.LogFormat != "text" && cfg.LogFormat != "json" {
		c.errorf("log_format", "%q: want text or json", f.LogFormat)
	}
	if cfg.LogLevel == "" {
		cfg.LogLevel = DefaultLogLevel
	} else if err := checkLogLevel(cfg.LogLevel); err != nil {
		c.errorf("log_level", "%v", err)
	}
	if cfg.Metrics != "" {
		if err := CheckListenAddr(cfg.Metrics); err != nil {
			c.errorf("metrics", "%v", err)
		}
	}
	cfg.Sysctls = c.checkSysctls(f.Sysctl)
	switch f.SysctlOnStop {
	case "", "restore":
	case "keep":
		cfg.KeepSysctls = true
	default:
		c.errorf("sysctl_on_stop", "%q: want restore (put the old values back on stop) or keep", f.SysctlOnStop)
	}

	if len(f.Interface) == 0 && !c.flags {
		c.errs = append(c.errs, &Error{File: c.file, Key: "interface", Msg: "no [[interface]] table: there is nothing to run"})
	}
	names := map[string]string{}
	listens := map[netip.AddrPort]string{} // DNS64 listen addresses so far, by path
	var all []struct {
		p    netip.Prefix
		path string
	}
	for i := range f.Interface {
		at := fmt.Sprintf("interface[%d]", i)
		in := c.checkInterface(at, &f.Interface[i])
		if in.Name != "" {
			if prev, dup := names[in.Name]; dup {
				c.errorf(at+".name", "%s is configured twice (first at line %d)", in.Name, c.lines.at(prev))
			}
			names[in.Name] = at + ".name"
		}
		// Against the other interfaces' prefixes only: the interface's own
		// were checked against each other by checkInterface.
		others := len(all)
		for _, p := range in.Prefixes {
			path := at + ".prefixes"
			for _, q := range all[:others] {
				if q.p.Overlaps(p) {
					c.errorf(path, "prefix %s overlaps %s (line %d): a destination must map through one interface", p, q.p, c.lines.at(q.path))
				}
			}
			all = append(all, struct {
				p    netip.Prefix
				path string
			}{p, path})
		}
		if in.DNS64 != nil {
			c.checkListenClash(at+".dns64.listen", in.DNS64.Listen, listens)
		}
		cfg.Interfaces = append(cfg.Interfaces, in)
	}
	return cfg
}

// checkListenClash reports a DNS64 listen address of path that another
// interface listens on already (the same, or the unspecified address of
// its family on the same port), and adds them to seen.
func (c *checker) checkListenClash(path string, aps []netip.AddrPort, seen map[netip.AddrPort]string) {
	for _, ap := range aps {
		for q, at := range seen {
			a, b := ap.Addr(), q.Addr()
			clash := ap == q || (ap.Port() == q.Port() && a.Is4() == b.Is4() && (a.IsUnspecified() || b.IsUnspecified()))
			if clash {
				c.errorf(path, "%s: another interface's DNS64 listens on %s (line %d)", ap, q, c.lines.at(at))
			}
		}
	}
	for _, ap := range aps {
		seen[ap] = path
	}
}

func (c *checker) checkSysctls(m map[string]any) []Sysctl {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	// File order, so that they are applied as written.
	sort.Slice(keys, func(a, b int) bool { return c.lines.at("sysctl."+keys[a]) < c.lines.at("sysctl."+keys[b]) })
	var out []Sysctl
	for _, k := range keys {
		path := "sysctl." + k
		var v string
		switch x := m[k].(type) {
		case string:
			v = x
		case int64:
			v = strconv.FormatInt(x, 10)
		case bool:
			v = "0"
			if x {
				v = "1"
			}
		default:
			c.errorf(path, "value must be a string or an integer, not %T", m[k])
			continue
		}
		s := Sysctl{Key: k, Value: v, Line: c.lines.at(path)}
		if err := checkSysctl(s); err != nil {
			c.errorf(path, "%v", err)
			continue
		}
		out = append(out, s)
	}
	return out
}

// checkSysctl checks that the key names an existing, writable kernel
// parameter and that the value is one line.
func checkSysctl(s Sysctl) error {
	if s.Key == "" || strings.ContainsAny(s.Key, "/ \t") || strings.Contains(s.Key, "..") || strings.HasPrefix(s.Key, ".") || strings.HasSuffix(s.Key, ".") {
		return fmt.Errorf("%q is not a sysctl name (want e.g. net.ipv6.conf.all.forwarding)", s.Key)
	}
	if s.Value == "" || strings.ContainsAny(s.Value, "\n\r") {
		return fmt.Errorf("value %q: must be one non-empty line", s.Value)
	}
	st, err := os.Stat(faithif.SysctlPath(s.Key))
	if err != nil {
		return fmt.Errorf("no such kernel parameter (%s is missing)", faithif.SysctlPath(s.Key))
	}
	if st.IsDir() {
		return fmt.Errorf("%s is a group of parameters, not one", s.Key)
	}
	if st.Mode().Perm()&0o200 == 0 {
		return fmt.Errorf("read-only kernel parameter")
	}
	return nil
}

func (c *checker) checkInterface(at string, f *InterfaceSettings) Interface {
	in := Interface{
		Name: f.Name, MTU: faithif.DefaultMTU, Rules: f.AccessFile, Line: c.lines.at(at),
		IdleTimeout: relay.DefaultIdleTimeout, DialTimeout: relay.DefaultDialTimeout, Grace: DefaultGrace,
		Limits:   relay.DefaultLimits(),
		DenyWith: flow.RefuseProhibited,
		FTPPorts: []uint16{ftp.DefaultPort},
	}
	if f.Name == "" {
		c.errorf(at+".name", "missing: every [[interface]] needs a name, e.g. name = \"faith0\"")
	} else if err := faithif.ValidateName(f.Name); err != nil {
		c.errorf(at+".name", "%v", err)
	}
	if len(f.Prefixes) == 0 {
		c.errorf(at+".prefixes", "missing: list the FAITH prefixes, e.g. prefixes = [\"64:ff9b::/96\"]")
	}
	for _, s := range f.Prefixes {
		p, err := relay.ParsePrefix(s)
		if err != nil {
			c.errorf(at+".prefixes", "%v", err)
			continue
		}
		for _, q := range in.Prefixes {
			switch {
			case q == p:
				c.errorf(at+".prefixes", "prefix %s is listed twice", p)
			case q.Overlaps(p):
				c.errorf(at+".prefixes", "prefix %s overlaps %s", p, q)
			}
		}
		in.Prefixes = append(in.Prefixes, p)
	}
	if f.MTU != nil {
		in.MTU = *f.MTU
		if err := faithif.ValidateMTU(in.MTU); err != nil {
			c.errorf(at+".mtu", "%v", err)
		}
	}
	for j, rf := range f.Route {
		rat := fmt.Sprintf("%s.route[%d]", at, j)
		r, ok := c.checkRoute(rat, rf, in.Prefixes)
		if !ok {
			continue
		}
		for _, q := range in.Routes {
			if q == r {
				c.errorf(rat+".prefix", "route %s is listed twice", r.Prefix)
			}
		}
		in.Routes = append(in.Routes, r)
	}
	accessKey := at + ".access_file"
	switch {
	case f.Rules != "" && f.AccessFile != "":
		c.errorf(at+".rules", "the access file is given twice, as access_file and as rules (its old name): keep access_file")
	case f.Rules != "":
		in.Rules, accessKey = f.Rules, at+".rules"
	}
	if in.Rules != "" {
		rs, err := relay.LoadRules(in.Rules, c.isLocal)
		if err != nil {
			c.add(accessKey, &Error{Msg: err.Error(), Content: true})
		}
		in.RuleSet = rs
	}
	if f.DenyWith != "" {
		d, err := parseDenyWith(f.DenyWith)
		if err != nil {
			c.errorf(at+".deny_with", "%v", err)
		}
		in.DenyWith = d
	}
	if d, ok := c.duration(at+".idle_timeout", f.IdleTimeout); ok {
		switch {
		case d < 0:
			c.errorf(at+".idle_timeout", "%s: must not be negative (0s: never)", d)
		case d == 0:
			in.IdleTimeout = -1 // relay: never
		default:
			in.IdleTimeout = d
		}
	}
	if d, ok := c.duration(at+".dial_timeout", f.DialTimeout); ok {
		in.DialTimeout = d
		if d <= 0 {
			c.errorf(at+".dial_timeout", "%s: must be positive", d)
		}
	}
	if d, ok := c.duration(at+".grace", f.Grace); ok {
		in.Grace = d
		if d < 0 {
			c.errorf(at+".grace", "%s: must not be negative", d)
		}
	}
	if f.DNS64 != nil {
		in.DNS64 = c.checkDNS64(at+".dns64", f.DNS64, in.Prefixes)
	}
	for _, lim := range []struct {
		key      string
		set      *int
		to       *int
		min, max int
	}{
		{"max_flows_per_client", f.MaxFlowsPerClient, &in.Limits.MaxFlows, 1, 0},
		{"max_handshakes_per_client", f.MaxHandshakesPerClient, &in.Limits.MaxHandshakes, 1, 0},
		{"max_flows_per_address", f.MaxFlowsPerAddress, &in.Limits.MaxFlowsPerAddress, 1, 0},
		{"max_handshakes_per_address", f.MaxHandshakesPerAddress, &in.Limits.MaxHandshakesPerAddress, 1, 0},
		// A quarter of it dials first, so at least 4; at most what the
		// stack's table of handshakes should hold in memory.
		{"max_handshakes", f.MaxHandshakes, &in.Limits.MaxHandshakesTotal, 4, MaxHandshakesLimit},
	} {
		if lim.set == nil {
			continue
		}
		*lim.to = *lim.set
		switch {
		case *lim.set < lim.min:
			c.errorf(at+"."+lim.key, "%d: must be at least %d", *lim.set, lim.min)
		case lim.max > 0 && *lim.set > lim.max:
			c.errorf(at+"."+lim.key, "%d: must be at most %d", *lim.set, lim.max)
		}
	}
	if ports, ok := c.portList(at+".privileged_ports", f.PrivilegedPorts, f.PrivilegedPortsFlag, "513,514"); ok {
		in.PrivilegedPorts = ports
	}
	if ports, ok := c.portList(at+".proxy_protocol_ports", f.ProxyProtocolPorts, f.ProxyProtocolPortsFlag, "25,80"); ok {
		in.ProxyProtocolPorts = ports
	}
	if ports, ok := c.ftpPorts(at+".ftp_ports", f); ok {
		in.FTPPorts = ports
	}
	return in
}

// ftpPorts checks ftp_ports (or --ftp-ports, a comma-separated list or
// "none"); ok is false if it is absent or wrong (and then an error is
// recorded).
func (c *checker) ftpPorts(path string, f *InterfaceSettings) ([]uint16, bool) {
	return c.portList(path, f.FTPPorts, f.FTPPortsFlag, "21,2121")
}

// checkDNS64 checks an [interface.dns64] table; prefixes are the
// interface's.
func (c *checker) checkDNS64(at string, f *DNS64Settings, prefixes []netip.Prefix) *dns64.Config {
	d := &dns64.Config{SynthAll: f.SynthAll, RateLimit: dns64.DefaultRateLimit, CacheSize: dns64.DefaultCacheSize, Timeout: dns64.DefaultTimeout}
	if len(f.Listen) == 0 {
		c.errorf(at+".listen", "missing: the addresses to answer on, e.g. %s", c.example(`listen = ["[2001:db8:1::1]:53"]`, "--dns64 [2001:db8:1::1]:53"))
	}
	seen := map[netip.AddrPort]bool{}
	for _, s := range f.Listen {
		ap, err := dns64.ParseListen(s)
		if err != nil {
			c.errorf(at+".listen", "%v", err)
			continue
		}
		if seen[ap] {
			c.errorf(at+".listen", "%s is listed twice", ap)
			continue
		}
		seen[ap] = true
		d.Listen = append(d.Listen, ap)
	}
	if len(f.Upstreams) == 0 {
		c.errorf(at+".upstreams", "missing: the resolvers to ask, e.g. %s", c.example(`upstreams = ["192.0.2.53"]`, "--dns64-upstream 192.0.2.53"))
	}
	ups := map[netip.AddrPort]bool{}
	for _, s := range f.Upstreams {
		ap, err := dns64.ParseUpstream(s)
		switch {
		case err != nil:
			c.errorf(at+".upstreams", "%v", err)
			continue
		case ups[ap]:
			c.errorf(at+".upstreams", "%s is listed twice", ap)
			continue
		case seen[ap]:
			c.errorf(at+".upstreams", "%s is a listen address: the responder would ask itself", ap)
			continue
		}
		for _, p := range prefixes {
			if p.Contains(ap.Addr()) {
				c.errorf(at+".upstreams", "%s is inside the FAITH prefix %s: DNS over UDP is not relayed", ap, p)
			}
		}
		ups[ap] = true
		d.Upstreams = append(d.Upstreams, ap)
	}
	switch {
	case f.Prefix == "" && len(prefixes) > 0:
		d.Prefix = prefixes[0]
	case f.Prefix != "":
		p, err := relay.ParsePrefix(f.Prefix)
		if err != nil {
			c.errorf(at+".prefix", "%v", err)
			break
		}
		d.Prefix = p
		if len(prefixes) > 0 && !slices.Contains(prefixes, p) {
			c.errorf(at+".prefix", "%s is not one of the interface's prefixes %v", p, prefixes)
		}
	}
	for _, s := range f.Exclude {
		p, err := netip.ParsePrefix(s)
		switch {
		case err != nil || !p.Addr().Is6():
			c.errorf(at+".exclude", "%q is not an IPv6 prefix", s)
		case p != p.Masked():
			c.errorf(at+".exclude", "%s has host bits set (did you mean %s?)", p, p.Masked())
		default:
			d.Exclude = append(d.Exclude, p)
		}
	}
	if f.Allow == nil {
		d.AllowLocalNets = true
	} else if len(f.Allow) == 0 {
		c.errorf(at+".allow", "empty: no client could ask (leave it out for %q, the router's own networks)", dns64.LocalNets)
	}
	for _, s := range f.Allow {
		if s == dns64.LocalNets {
			d.AllowLocalNets = true
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			if a, aerr := netip.ParseAddr(s); aerr == nil && a.Zone() == "" {
				p, err = a.Prefix(a.BitLen())
			}
		}
		switch {
		case err != nil || p.Addr().Zone() != "":
			c.errorf(at+".allow", "%q: want a prefix (2001:db8:1::/64, 192.0.2.0/24), an address, or %q", s, dns64.LocalNets)
		case p.Addr().Is4In6():
			c.errorf(at+".allow", "%s: an IPv4-mapped prefix; write the IPv4 prefix", p)
		case p != p.Masked():
			c.errorf(at+".allow", "%s has host bits set (did you mean %s?)", p, p.Masked())
		default:
			d.Allow = append(d.Allow, p)
		}
	}
	for _, lim := range []struct {
		key       string
		set       *int
		to        *int
		max       int
		zeroMeans string
	}{
		{"rate_limit", f.RateLimit, &d.RateLimit, dns64.MaxRateLimit, "no limit"},
		{"cache_size", f.CacheSize, &d.CacheSize, dns64.MaxCacheSize, "no cache"},
	} {
		if lim.set == nil {
			continue
		}
		*lim.to = *lim.set
		if *lim.set < 0 || *lim.set > lim.max {
			c.errorf(at+"."+lim.key, "%d: must be between 0 (%s) and %d", *lim.set, lim.zeroMeans, lim.max)
		}
	}
	if t, ok := c.duration(at+".timeout", f.Timeout); ok {
		d.Timeout = t
		if t <= 0 || t > dns64.MaxTimeout {
			c.errorf(at+".timeout", "%s: must be positive and at most %s", t, dns64.MaxTimeout)
		}
	}
	return d
}

// example returns a setting as written in the file, or as a flag.
func (c *checker) example(key, flag string) string {
	if c.flags {
		return flag
	}
	return key
}

// duration parses an optional duration key such as "30s"; ok is false if
// it is absent or wrong (and then an error is recorded).
func (c *checker) duration(path string, s *string) (time.Duration, bool) {
	if s == nil {
		return 0, false
	}
	d, err := time.ParseDuration(*s)
	if err != nil {
		c.errorf(path, "%q is not a duration (want e.g. 30s, 10m, 1h)", *s)
		return 0, false
	}
	return d, true
}

func (c *checker) checkRoute(at string, rf RouteSettings, prefixes []netip.Prefix) (faithif.Route, bool) {
	var r faithif.Route
	if rf.Prefix == "" {
		c.errorf(at+".prefix", "missing: a route needs a prefix, e.g. prefix = \"64:ff9b::/96\"")
		return r, false
	}
	p, err := netip.ParsePrefix(rf.Prefix)
	if err != nil || !p.Addr().Is6() || p.Addr().Is4In6() {
		c.errorf(at+".prefix", "%q is not an IPv6 prefix", rf.Prefix)
		return r, false
	}
	if p != p.Masked() {
		c.errorf(at+".prefix", "%s has host bits set (did you mean %s?)", p, p.Masked())
		return r, false
	}
	r.Prefix = p
	inside := false
	for _, q := range prefixes {
		if q.Bits() <= p.Bits() && q.Contains(p.Addr()) {
			inside = true
		}
	}
	if !inside && len(prefixes) > 0 {
		c.errorf(at+".prefix", "%s is not inside the interface's prefixes %v: the interface could not map what it routes", p, prefixes)
		return r, false
	}
	if rf.Metric != nil {
		r.Metric = *rf.Metric
		if r.Metric < 0 || int64(r.Metric) > 1<<32-1 {
			c.errorf(at+".metric", "%d: must be between 0 and 4294967295", r.Metric)
			return r, false
		}
	}
	if rf.Table != nil {
		r.Table = *rf.Table
		if r.Table < 0 || int64(r.Table) > 1<<32-1 || r.Table == 255 {
			c.errorf(at+".table", "%d: must be between 0 (main) and 4294967295, and not 255 (local)", r.Table)
			return r, false
		}
	}
	return r, true
}

// parseDenyWith parses how denied flows are answered: icmp6 (ICMPv6
// administratively prohibited, the client sees EACCES) or rst.
func parseDenyWith(s string) (flow.Refusal, error) {
	switch s {
	case "icmp6":
		return flow.RefuseProhibited, nil
	case "rst":
		return flow.RefuseReset, nil
	}
	return flow.RefuseProhibited, fmt.Errorf("%q: want icmp6 or rst", s)
}

// checkLogLevel checks a log level name as log/slog parses it: debug,
// info, warn or error.
func checkLogLevel(s string) error {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(s)); err != nil {
		return fmt.Errorf("%q: want debug, info, warn or error", s)
	}
	return nil
}

// CheckListenAddr checks a HOST:PORT to listen on.
func CheckListenAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q: want HOST:PORT, e.g. 127.0.0.1:9464 or [::]:9464", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q: port %q is not a number between 0 and 65535", addr, port)
	}
	if host != "" {
		if _, err := netip.ParseAddr(host); err != nil && host != "localhost" {
			return fmt.Errorf("%q: host %q is not an IP address", addr, host)
		}
	}
	return nil
}

// stripIndexes turns "interface[1].route[0].prefix" into
// "interface.route.prefix", the key as written in the file.
func stripIndexes(path string) string {
	var b strings.Builder
	skip := false
	for _, r := range path {
		switch {
		case r == '[':
			skip = true
		case r == ']':
			skip = false
		case !skip:
			b.WriteRune(r)
		}
	}
	return b.String()
}
