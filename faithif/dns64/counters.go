package dns64

import (
	"sync/atomic"

	"github.com/miekg/dns"
)

// The query types counted apart; every other type is "other".
var qtypeNames = [...]string{"a", "aaaa", "ptr", "https", "other"}

func qtypeIndex(t uint16) int {
	switch t {
	case dns.TypeA:
		return 0
	case dns.TypeAAAA:
		return 1
	case dns.TypePTR:
		return 2
	case dns.TypeHTTPS:
		return 3
	}
	return 4
}

// result is how a query ended: the RCODE the client got, or why it got
// none of the upstreams'.
type result int

const (
	resultNoError     result = iota // NOERROR, records or not
	resultNXDomain                  // NXDOMAIN
	resultServFail                  // SERVFAIL: every upstream failed, or one said so
	resultRefused                   // REFUSED from an upstream
	resultFormErr                   // FORMERR
	resultNotImp                    // NOTIMP
	resultOther                     // any other RCODE
	resultNotAllowed                // REFUSED: the client is outside the allowed prefixes
	resultRateLimited               // over the client's rate: dropped (UDP) or REFUSED (TCP)
	resultOverloaded                // SERVFAIL at once: maxInflight upstream queries in flight
	numResults
)

var resultNames = [numResults]string{"noerror", "nxdomain", "servfail", "refused", "formerr", "notimp", "other", "not_allowed", "rate_limited", "overloaded"}

func resultOf(rcode int) result {
	switch rcode {
	case dns.RcodeSuccess:
		return resultNoError
	case dns.RcodeNameError:
		return resultNXDomain
	case dns.RcodeServerFailure:
		return resultServFail
	case dns.RcodeRefused:
		return resultRefused
	case dns.RcodeFormatError:
		return resultFormErr
	case dns.RcodeNotImplemented:
		return resultNotImp
	}
	return resultOther
}

// The kinds of synthesized answers.
var synthNames = [...]string{"aaaa", "ptr"}

const (
	synthAAAA = iota
	synthPTR
)

// Reason is why an AAAA record was withheld: the relay would refuse every
// connection to it from the client asking.
type Reason int

// The reasons, as relay.Policy.CheckAnyPort gives them.
const (
	ReasonAlwaysRefused Reason = iota // 0/8, 127/8, 169.254/16, 224/4, 240/4: relay.ErrForbiddenDestination
	ReasonNotGlobal                   // a non-global IPv4 address under 64:ff9b::/96: relay.ErrNotGlobal
	ReasonRouterAddress               // the router's own address, or a local route: relay.ErrRouterAddress
	ReasonNotMappable                 // a real AAAA in a FAITH prefix that maps to nothing (u-octet)
	ReasonAccessRules                 // the access rules deny the client every port
	numReasons
)

var reasonNames = [numReasons]string{"always_refused", "not_global", "router_address", "not_mappable", "access_rules"}

// String names the reason as logs and metrics do.
func (r Reason) String() string { return reasonNames[r] }

// stats is the Responder's live counters.
type stats struct {
	queries     [len(qtypeNames)]atomic.Uint64
	results     [numResults]atomic.Uint64
	synthesized [len(synthNames)]atomic.Uint64
	suppressed  [numReasons]atomic.Uint64
	cacheHits   atomic.Uint64
	cacheMisses atomic.Uint64
}

// Counters is a snapshot of a Responder's counters. Their names start with
// DNS64 because status.Status embeds them beside the relay's and the
// stack's.
//
// The struct tags describe each counter once for every reader (see package
// faithif/status): json is its key in `faithif show --json`, text its group
// and item in the text `show` (printed only while a responder runs), metric
// its Prometheus type, name (after faithif_) and label, help its help text.
type Counters struct {
	// Queries counts the queries received, by type.
	DNS64Queries map[string]uint64 `json:"dns64_queries_total" text:"dns64 queries" showif:"dns64_listen" metric:"counter dns64_queries_total type" help:"DNS64 queries received, by query type: a, aaaa, ptr, https, other."`
	// Results counts them by how they ended: every query under one.
	DNS64Results map[string]uint64 `json:"dns64_query_results_total" text:"dns64 results" showif:"dns64_listen" metric:"counter dns64_query_results_total result" help:"DNS64 queries by how they ended: the RCODE answered (noerror, nxdomain, servfail, refused, formerr, notimp, other), or not_allowed (a client outside the allowed prefixes, REFUSED) rate_limited (over its rate, per address or per /64: dropped, REFUSED over TCP) or overloaded (SERVFAIL at once: 256 upstream queries in flight)."`
	// Synthesized counts the answers faithif made up: AAAA records from A
	// records, and CNAMEs from an ip6.arpa name to its in-addr.arpa name.
	DNS64Synthesized map[string]uint64 `json:"dns64_synthesized_total" text:"dns64 synthesized" showif:"dns64_listen" metric:"counter dns64_synthesized_total kind" help:"DNS64 answers synthesized: aaaa (AAAA records made from A records), ptr (an ip6.arpa name under a FAITH prefix answered with a CNAME to its in-addr.arpa name)."`
	// Suppressed counts the AAAA records withheld because the relay would
	// refuse the client every port of them, by Reason.
	DNS64Suppressed map[string]uint64 `json:"dns64_synthesis_suppressed_total" text:"dns64 suppressed" showif:"dns64_listen" metric:"counter dns64_synthesis_suppressed_total reason" help:"AAAA records withheld because the relay would refuse the asking client every port of them (A records not synthesized, or real AAAA records inside a FAITH prefix), by reason: always_refused, not_global, router_address, not_mappable, access_rules."`
	// CacheEntries is how many upstream answers the cache holds;
	// CacheHits and CacheMisses count the lookups.
	DNS64CacheEntries int64  `json:"dns64_cache_entries" text:"dns64 cache,entries" showif:"dns64_listen" metric:"gauge dns64_cache_entries" help:"Upstream answers in the DNS64 cache."`
	DNS64CacheHits    uint64 `json:"dns64_cache_hits_total" text:"dns64 cache,hits" showif:"dns64_listen" metric:"counter dns64_cache_hits_total" help:"DNS64 upstream lookups answered from the cache."`
	DNS64CacheMisses  uint64 `json:"dns64_cache_misses_total" text:"dns64 cache,misses" showif:"dns64_listen" metric:"counter dns64_cache_misses_total" help:"DNS64 upstream lookups not in the cache, asked upstream."`
}

// Counters returns a snapshot of the counters; a nil Responder's are all
// zero, every key present.
func (r *Responder) Counters() Counters {
	var s *stats
	if r != nil {
		s = &r.stats
	} else {
		s = new(stats)
	}
	c := Counters{
		DNS64Queries:     make(map[string]uint64, len(qtypeNames)),
		DNS64Results:     make(map[string]uint64, numResults),
		DNS64Synthesized: make(map[string]uint64, len(synthNames)),
		DNS64Suppressed:  make(map[string]uint64, numReasons),
		DNS64CacheHits:   s.cacheHits.Load(),
		DNS64CacheMisses: s.cacheMisses.Load(),
	}
	for i, n := range qtypeNames {
		c.DNS64Queries[n] = s.queries[i].Load()
	}
	for i, n := range resultNames {
		c.DNS64Results[n] = s.results[i].Load()
	}
	for i, n := range synthNames {
		c.DNS64Synthesized[n] = s.synthesized[i].Load()
	}
	for i, n := range reasonNames {
		c.DNS64Suppressed[n] = s.suppressed[i].Load()
	}
	if r != nil && r.cache != nil {
		c.DNS64CacheEntries = int64(r.cache.len())
	}
	return c
}
