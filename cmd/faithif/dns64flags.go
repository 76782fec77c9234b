package main

import (
	"flag"
	"strings"

	"github.com/faithif/faithif/faithif/config"
	"github.com/faithif/faithif/faithif/dns64"
)

// commaList is a flag of comma-separated values that may also be repeated:
// --dns64-upstream 192.0.2.53,192.0.2.54 or twice.
type commaList []string

// String implements flag.Value.
func (l *commaList) String() string { return strings.Join(*l, ",") }

// Set implements flag.Value.
func (l *commaList) Set(s string) error {
	for _, v := range strings.Split(s, ",") {
		*l = append(*l, strings.TrimSpace(v))
	}
	return nil
}

// dns64Flags are create's DNS64 flags, the [interface.dns64] table of
// faithif.conf (config.DNS64Settings) one flag a key.
type dns64Flags struct {
	fs                                *flag.FlagSet
	listen, upstreams, exclude, allow commaList
	prefix, timeout                   string
	synthAll                          bool
	rateLimit, cacheSize              int
}

// addDNS64Flags defines the DNS64 flags on fs.
func addDNS64Flags(fs *flag.FlagSet) *dns64Flags {
	d := &dns64Flags{fs: fs}
	fs.Var(&d.listen, "dns64", "answer DNS (UDP and TCP) on `LISTEN`[,LISTEN...], e.g. [2001:db8:1::1]:53, synthesizing AAAA records in the FAITH prefix: DNS64 (off by default; needs --dns64-upstream)")
	fs.Var(&d.upstreams, "dns64-upstream", "the resolvers DNS64 asks, `ADDR`[:PORT][,...], in order: the next when one fails")
	fs.StringVar(&d.prefix, "dns64-prefix", "", "the `PREFIX` DNS64 synthesizes in, one of --prefix (default: the first)")
	fs.Var(&d.exclude, "dns64-exclude", "IPv6 `PREFIXES` whose AAAA records count as absent, besides ::ffff:0:0/96 (comma-separated)")
	fs.BoolVar(&d.synthAll, "dns64-synthall", false, "synthesize from the A records for every name, even one with AAAA records")
	fs.Var(&d.allow, "dns64-allow", "the `CLIENTS` DNS64 answers: prefixes, addresses, or "+dns64.LocalNets+" (the router's own networks, the default), comma-separated")
	fs.IntVar(&d.rateLimit, "dns64-rate-limit", dns64.DefaultRateLimit, "`N` queries a second each client address may ask, bursts of twice that, each IPv6 /64 four times that (0: no limit)")
	fs.IntVar(&d.cacheSize, "dns64-cache-size", dns64.DefaultCacheSize, "`N` upstream answers DNS64 keeps for their TTL (0: no cache)")
	fs.StringVar(&d.timeout, "dns64-timeout", dns64.DefaultTimeout.String(), "how long (`D`) each upstream has to answer")
	return d
}

// settings returns the flags as an [interface.dns64] table, nil if no
// DNS64 flag was given.
func (d *dns64Flags) settings() *config.DNS64Settings {
	var s *config.DNS64Settings
	d.fs.Visit(func(f *flag.Flag) {
		if !strings.HasPrefix(f.Name, "dns64") {
			return
		}
		if s == nil {
			s = &config.DNS64Settings{Listen: d.listen, Upstreams: d.upstreams, Prefix: d.prefix, Exclude: d.exclude, SynthAll: d.synthAll}
		}
		switch f.Name {
		case "dns64-allow":
			s.Allow = append([]string{}, d.allow...) // given: not nil, even if empty
		case "dns64-rate-limit":
			s.RateLimit = &d.rateLimit
		case "dns64-cache-size":
			s.CacheSize = &d.cacheSize
		case "dns64-timeout":
			s.Timeout = &d.timeout
		}
	})
	return s
}
