// Package relay is the policy and the copying half of faithif: it decides
// each captured IPv6 flow and carries the accepted ones to IPv4.
//
// A flow arrives as a flow.Request from the stack (Relay.Handle is the
// stack's flow.Handler). The relay maps its IPv6 destination to the IPv4
// address embedded in it (Mapper, RFC 6052), refuses destinations that must
// never be reached and those the access rules deny (Rules, faithd.conf),
// admits it within the limits (per client address, per client /64), dials
// the IPv4 server with an ordinary kernel socket (kernelConn), and only then
// accepts the client's handshake, so that the client hears what the IPv4
// side answered. Under pressure (a quarter of the handshake table already
// dialling) it accepts first and dials after, so that a spoofed source costs
// no IPv4 connection. The copy loop (startPipe) then moves bytes both ways,
// propagating half-close, reset and idle timeout.
//
// Files, in the order a flow meets them: relay.go (Handle), recent.go (the
// failed dials of the last seconds), limits.go, policy.go (with mapper.go
// and rules.go), dial.go, kernelconn.go, pipe.go; counters.go holds the
// counters, loglimit.go the rate limit of refusal log lines, drain.go the
// shutdown, and flows.go the list of the flows being set up or relayed
// (Relay.Flows, for `faithif flows`). app.go is the hook of the
// application relays (Config.Apps, an App per destination port, such as
// relay/ftp's): it takes over the copy step of their flows.
//
// It knows nothing of TUN devices or gVisor: it sees captured flows only
// through package flow.
package relay
