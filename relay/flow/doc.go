// Package flow is the contract between faithif's two halves: the stack that
// captures IPv6 TCP flows (package stack) and the relay that decides and
// carries them (package relay).
//
// A captured flow arrives as a Request, the way a connection waits in an
// IPV6_FAITH listening socket on BSD: its client and the FAITH address it
// asked for are known, and its handshake waits for the decision. The
// decision is Accept, which completes the handshake and returns the flow's
// Conn, or Refuse, which answers the client's SYN as a Refusal says.
//
// Dependencies point into this package: stack imports it to hand over what it
// captures, relay imports it to decide and carry that, and neither imports
// the other. It lives beside relay because it states what the relay needs of
// a captured flow; it imports only the standard library, so the stack depends
// on no relay code, and a program embedding the stack can be another
// consumer.
package flow
