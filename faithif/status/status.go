package status

import (
	"github.com/faithif/faithif/faithif/dns64"
	"github.com/faithif/faithif/relay"
	"github.com/faithif/faithif/relay/ftp"
	"github.com/faithif/faithif/stack"
)

// SchemaVersion is the version of Status's JSON form (`show --json`). It
// changes when a key is renamed or removed or changes its meaning; new keys
// may be added without a change. Version 2 named every counter as its
// Prometheus metric is named (TestJSONKeysFollowMetrics).
const SchemaVersion = 2

// Status is the state and counters of one running interface.
type Status struct {
	// SchemaVersion is the SchemaVersion of the instance that answered.
	SchemaVersion int    `json:"schema_version" text:"-"`
	Name          string `json:"name" text:"-"`
	PID           int    `json:"pid" text:"-"`
	// Owner is the command whose process runs the interface: OwnerCreate
	// or OwnerRun. `faithif destroy` stops only the former's.
	Owner         string  `json:"owner" text:"-"`
	UptimeSeconds float64 `json:"uptime_seconds" text:"-"`

	// Prefixes are the FAITH prefixes; Routes the routes the instance
	// installed (create --route, [[interface.route]]).
	Prefixes []string `json:"prefixes" text:"prefixes"`
	Routes   []string `json:"routes" text:"routes"`
	// Rules is the access file, empty for none; RuleCount the rules in
	// force.
	Rules     string `json:"access_file" text:"rules,file"`
	RuleCount int    `json:"rules" text:"rules,count" metric:"gauge rules" help:"Access rules in force."`
	// LastReloadSuccessful is false after a reload that failed (the old
	// rules stayed) until one succeeds; RulesLoadedAt is when the rules in
	// force were read (Unix seconds: start-up or the last successful
	// reload); ReloadsOK and ReloadsFailed count the reloads by result.
	LastReloadSuccessful bool   `json:"last_reload_successful" text:"rules,last reload successful" metric:"gauge last_reload_successful" help:"1 unless the last reload of the access rules failed (the old rules then stay in force)."`
	RulesLoadedAt        int64  `json:"rules_loaded_timestamp_seconds" text:"rules,loaded at (unix time)" metric:"gauge rules_loaded_timestamp_seconds" help:"When the access rules in force were read (Unix time): start-up or the last successful reload."`
	ReloadsOK            uint64 `json:"reloads_ok_total" text:"rules,reloads ok" metric:"counter reloads_total result=ok" help:"Reloads of the access rules, by result."`
	ReloadsFailed        uint64 `json:"reloads_failed_total" text:"rules,reloads failed" metric:"counter reloads_total result=failed" help:"Reloads of the access rules, by result."`
	MTU                  int    `json:"mtu" text:"mtu"`
	// Grace is how long open flows may finish when the interface stops
	// (a duration, "10s"): its --grace, or grace in faithif.conf.
	Grace string `json:"grace" text:"grace"`
	// KeepFaith is net.inet6.ip6.keepfaith as the interface applies it.
	KeepFaith bool `json:"keepfaith" text:"keepfaith" metric:"gauge keepfaith" help:"net.inet6.ip6.keepfaith as the interface applies it: 1 captures, 0 discards."`
	// Draining is true from the first stop request on; Up while the
	// stack runs and the interface is not draining.
	Draining bool `json:"draining" text:"draining"`
	Up       bool `json:"interface_up" text:"running" metric:"gauge interface_up" help:"1 while the interface's stack runs and it is not draining."`
	// NotReady is empty while the interface relays (running, not draining,
	// keepfaith 1, link up), else why not: what /readyz and `faithif
	// health` report.
	NotReady string `json:"not_ready" text:"not ready"`
	// Warnings say what keeps the interface from relaying as the operator
	// would expect (keepfaith 0, IPv6 forwarding off), and how to fix it.
	Warnings []string `json:"warnings" text:"warnings"`

	RelayCounters
	// The limits in force: per client /64, per client address, and the
	// handshakes of all clients together (a quarter of which may dial
	// first).
	MaxFlowsPerClient       int `json:"max_flows_per_client" text:"clients,max flows each"`
	MaxHandshakesPerClient  int `json:"max_handshakes_per_client" text:"clients,max handshakes each"`
	MaxFlowsPerAddress      int `json:"max_flows_per_address" text:"addresses,max flows each"`
	MaxHandshakesPerAddress int `json:"max_handshakes_per_address" text:"addresses,max handshakes each"`
	MaxHandshakes           int `json:"max_handshakes" text:"handshakes,max"`
	StackCounters

	// DNS64Listen are the addresses the interface's DNS64 responder
	// answers on (UDP and TCP), empty without one; DNS64Upstreams the
	// resolvers it asks, in order; DNS64Prefix the prefix it synthesizes
	// in.
	DNS64Listen    []string `json:"dns64_listen" text:"dns64,listen"`
	DNS64Upstreams []string `json:"dns64_upstreams" text:"dns64,upstreams" showif:"dns64_listen"`
	DNS64Prefix    string   `json:"dns64_prefix" text:"dns64,prefix" showif:"dns64_listen"`
	DNS64Counters
	// FTPPorts are the destination ports the FTP relay takes (relay/ftp),
	// empty for none; FTPCounters its counters.
	FTPPorts []int `json:"ftp_ports" text:"ftp,ports"`
	FTPCounters
	// PrivilegedPorts and ProxyProtocolPorts are the destination ports
	// whose IPv4 connections come from a reserved source port, and start
	// with a PROXY protocol v2 header (README, "Per-port options").
	PrivilegedPorts    []int `json:"privileged_ports" text:"per-port options,privileged source ports"`
	ProxyProtocolPorts []int `json:"proxy_protocol_ports" text:"per-port options,PROXY protocol"`
}

// The values of Status.Owner.
const (
	// OwnerCreate is an interface of its own process, `faithif create`.
	OwnerCreate = "create"
	// OwnerRun is one of the interfaces of the appliance, `faithif run`.
	OwnerRun = "run"
)

// RelayCounters, StackCounters, DNS64Counters and FTPCounters are the
// counters Status embeds, named apart so that all can be embedded.
type (
	RelayCounters = relay.Counters
	StackCounters = stack.Counters
	DNS64Counters = dns64.Counters
	FTPCounters   = ftp.Counters
)
