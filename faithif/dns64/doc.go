// Package dns64 is faithif's built-in DNS64 (RFC 6147): a DNS server that
// hands IPv6-only clients the FAITH addresses of IPv4-only names, so that
// they find the relay by name, as KAME's totd did for faithd.
//
// A Responder answers the queries of allowed clients over UDP and TCP on its
// listen addresses, asking its upstream resolvers in order. An AAAA query is
// answered with the name's own AAAA records if it has usable ones; else the
// name's A records are looked up and each becomes an AAAA record in the
// synthesis prefix (RFC 6052, any length). Every other query, and any query
// with the CD bit set, gets the upstream's answer unchanged, but for PTR
// queries of a full ip6.arpa name under a FAITH prefix: those are answered
// with a CNAME to the in-addr.arpa name of the IPv4 address inside, followed
// by the upstream's answer for that name (RFC 6147 5.3.1).
//
// What is unlike unbound's dns64 module and BIND's dns64 option:
//
//   - Only addresses the relay would accept. Each A record is checked with
//     the relay's own policy for the client asking (relay.Policy.CheckAnyPort,
//     the very code that decides its flows): an address the relay always
//     refuses (0/8, 127/8, 169.254/16, 224/4, 240/4, a non-global one under
//     64:ff9b::/96), one of the router's own, or one the access rules deny
//     the client on every port, is not synthesized. If no A record is left,
//     the name has no AAAA: the answer is the AAAA lookup's (NOERROR, no
//     data, its SOA). A real AAAA record inside a FAITH prefix that the relay
//     would refuse counts as absent, as an excluded one does. unbound and
//     BIND cannot know the translator's policy; they hand out every address
//     and the connection then fails (faithif's relay refuses it), where
//     faithif's client falls back to another address, or to none, at once.
//   - TTL. A synthesized record's TTL is the smaller of the A record's and
//     the negative-caching TTL of the SOA that came with the empty AAAA
//     answer (600 s without one), as RFC 6147 5.1.7 says; unbound copies the
//     A record's TTL.
//   - Exclusion. AAAA records in ::ffff:0:0/96, and in the configured
//     exclude ranges (BIND's exclude), count as absent (RFC 6147 5.1.4); if
//     some are left, only those are returned. unbound has no exclusion (only
//     dns64-ignore-aaaa, per name).
//   - PTR. A CNAME to the in-addr.arpa name, which a client can follow and
//     cache on its own; unbound answers the PTR records under the ip6.arpa
//     name itself. PTR queries are rewritten under every FAITH prefix of the
//     interface, not only the synthesis prefix.
//   - DNSSEC. faithif does not validate. With CD set nothing is synthesized
//     (RFC 6147 5.5 forbids it with DO and CD; faithif, as unbound, does not
//     synthesize with CD alone either). A synthesized answer never has AD,
//     even from a validating upstream, and carries no signatures of the A
//     records (those of the CNAME chain stay); RFC 6147 lets a validating
//     DNS64 set AD, but the client could never check such records. AD of an
//     unchanged answer is passed on to a client that set DO or AD. With DO
//     and without CD faithif synthesizes, as unbound does; BIND does not
//     when the records are signed, unless break-dnssec.
//
// As RFC 6147 asks, and as unbound and BIND do: an AAAA answer with an RCODE
// other than NOERROR or NXDOMAIN counts as empty; NXDOMAIN is returned as it
// is; CNAME chains are followed as far as the answer has them (the chain,
// then the synthesized records of its last name; a loop is SERVFAIL);
// dns64-synthall (SynthAll) synthesizes for every name.
//
// Around it: answers are cached for their TTL (negative ones for their SOA's
// negative TTL, RFC 2308), at most CacheSize of them and 32 MiB (each counted
// by its packed size), the least recently used forgotten first, and
// concurrent questions share one upstream query; each upstream has Timeout
// to answer before the next is asked, and one answering SERVFAIL, REFUSED,
// NOTIMP or FORMERR is passed over too; when none answers, the client gets
// SERVFAIL. One that timed out, failed or answered SERVFAIL or REFUSED is
// asked after the others for 30 s, then probed in its turn again. At most
// 256 upstream queries are in flight (each holds a socket); beyond, SERVFAIL
// at once. A truncated upstream answer is asked again over
// TCP. Upstream queries carry EDNS0 (1232 bytes, the client's DO bit);
// answers to a client carry EDNS0 if its query did, and over UDP are at most
// 512 bytes without it, 1232 with it, truncated (TC) beyond. Clients outside
// the allowed prefixes (by default the networks the router has an address
// in, BIND's localnets) are REFUSED (over TCP, the connection is then
// closed): no open resolver. Each client address may ask RateLimit queries
// a second, twice that at once, and each IPv6 /64 four times that; beyond,
// UDP queries are dropped (a forged source gets nothing) and TCP ones
// REFUSED. At most 64 TCP connections are served at once on each address, 8
// of one client address.
package dns64
