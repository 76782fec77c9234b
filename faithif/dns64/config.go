package dns64

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Defaults for Config fields left zero by package config.
const (
	// DefaultPort is the port of a listen or upstream address given
	// without one.
	DefaultPort = 53
	// DefaultRateLimit is how many queries a second one client address may
	// ask; twice as many may come at once.
	DefaultRateLimit = 100
	// DefaultCacheSize is how many answers the cache holds.
	DefaultCacheSize = 10000
	// DefaultTimeout is how long one upstream has to answer before the
	// next one is asked: two upstreams fit in a stub resolver's 5 s.
	DefaultTimeout = 2 * time.Second
	// MaxRateLimit and MaxCacheSize bound the settings.
	MaxRateLimit = 1000000
	MaxCacheSize = 10000000
	// MaxTimeout bounds Timeout: a client has long given up by then.
	MaxTimeout = 30 * time.Second
)

// LocalNets is the Allow keyword for the networks the router has an
// address in (BIND's "localnets"): the default.
const LocalNets = "localnets"

// MappedPrefix is ::ffff:0:0/96, the IPv4-mapped addresses: an AAAA record
// in it is always treated as absent (RFC 6147 5.1.4).
var MappedPrefix = netip.MustParsePrefix("::ffff:0:0/96")

// Config is what a Responder does, as package config checked it.
type Config struct {
	// Listen are the addresses answered on, each over UDP and TCP.
	Listen []netip.AddrPort
	// Upstreams are the resolvers asked, in order: the next one when one
	// does not answer in Timeout, or answers SERVFAIL, REFUSED, NOTIMP or
	// FORMERR.
	Upstreams []netip.AddrPort
	// Prefix is the prefix AAAA records are synthesized in: one of the
	// interface's FAITH prefixes.
	Prefix netip.Prefix
	// Exclude are the ranges in which a real AAAA record counts as absent,
	// besides MappedPrefix (always).
	Exclude []netip.Prefix
	// SynthAll synthesizes from the A records for every name, whatever
	// AAAA records it has (unbound's dns64-synthall).
	SynthAll bool
	// Allow are the client source prefixes answered; AllowLocalNets adds
	// the networks the router has an address in. Anyone else is REFUSED.
	Allow          []netip.Prefix
	AllowLocalNets bool
	// RateLimit is how many queries a second each client address may ask
	// (with bursts of twice as many), each IPv6 client /64 four times as
	// many; 0: no limit.
	RateLimit int
	// CacheSize is how many upstream answers are kept (within 32 MiB of
	// them); 0: none.
	CacheSize int
	// Timeout is how long each upstream has for each query.
	Timeout time.Duration
}

// ParseListen parses a listen address: an IP address with an optional
// port (DefaultPort), "2001:db8:1::1", "[2001:db8:1::1]:5353",
// "192.0.2.1:53"; "[::]:53" listens on every address. The port must be 1 to
// 65535.
func ParseListen(s string) (netip.AddrPort, error) {
	ap, err := parseAddrPort(s)
	if err == nil && ap.Addr().IsMulticast() {
		err = fmt.Errorf("%q: a multicast address", s)
	}
	return ap, err
}

// ParseUpstream parses an upstream resolver's address, as ParseListen, but
// it must be a unicast address.
func ParseUpstream(s string) (netip.AddrPort, error) {
	ap, err := parseAddrPort(s)
	if err == nil && (ap.Addr().IsUnspecified() || ap.Addr().IsMulticast()) {
		err = fmt.Errorf("%q: not a unicast address", s)
	}
	return ap, err
}

func parseAddrPort(s string) (netip.AddrPort, error) {
	ap, err := splitAddrPort(s)
	if err == nil && ap.Addr().Is4In6() {
		err = fmt.Errorf("%q: an IPv4-mapped address (write %s)", s, ap.Addr().Unmap())
	}
	return ap, err
}

func splitAddrPort(s string) (netip.AddrPort, error) {
	host, bracketed := s, strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]")
	if bracketed {
		host = s[1 : len(s)-1] // [2001:db8::53]
	}
	if a, err := netip.ParseAddr(host); err == nil && (a.Is6() || !bracketed) {
		return netip.AddrPortFrom(a, DefaultPort), nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q: want an IP address, optionally with a port: 192.0.2.53, [2001:db8::53]:53", s)
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q: %q is not an IP address", s, host)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return netip.AddrPort{}, fmt.Errorf("%q: port %q: want a number from 1 to 65535", s, port)
	}
	return netip.AddrPortFrom(a, uint16(n)), nil
}
