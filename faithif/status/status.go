package status

import (
	"github.com/faithif/faithif/relay"
	"github.com/faithif/faithif/stack"
)

// Status is the state and counters of one running interface.
type Status struct {
	Name          string  `json:"name" text:"-"`
	PID           int     `json:"pid" text:"-"`
	UptimeSeconds float64 `json:"uptime_seconds" text:"-"`

	// Prefixes are the FAITH prefixes; Routes the routes the instance
	// installed (create --route, [[interface.route]]).
	Prefixes []string `json:"prefixes" text:"prefixes"`
	Routes   []string `json:"routes" text:"routes"`
	// Rules is the access file, empty for none; RuleCount the rules in
	// force.
	Rules     string `json:"rules" text:"rules,file"`
	RuleCount int    `json:"rule_count" text:"rules,count" metric:"gauge rules" help:"Access rules in force."`
	MTU       int    `json:"mtu" text:"mtu"`
	// KeepFaith is net.inet6.ip6.keepfaith as the interface applies it.
	KeepFaith bool `json:"keepfaith" text:"keepfaith" metric:"gauge keepfaith" help:"net.inet6.ip6.keepfaith as the interface applies it: 1 captures, 0 discards."`
	// Draining is true from the first stop request on; Up while the
	// stack runs and the interface is not draining.
	Draining bool `json:"draining" text:"draining"`
	Up       bool `json:"interface_up" text:"relaying" metric:"gauge interface_up" help:"1 while the interface's stack runs and it is not draining."`

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
}

// RelayCounters and StackCounters are the counters Status embeds, named
// apart so that both can be embedded.
type (
	RelayCounters = relay.Counters
	StackCounters = stack.Counters
)
