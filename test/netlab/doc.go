// Package netlab builds throwaway network-namespace labs for faithif's
// end-to-end tests.
//
// A lab is three network namespaces joined by veth pairs, all addressed
// from the documentation ranges (RFC 3849 and RFC 5737):
//
//	client (IPv6 only)        router                         server (IPv4 only)
//	2001:db8:1::2/64  <---->  2001:db8:1::1/64
//	                          192.0.2.1/24           <---->  192.0.2.2/24
//	                          faith0 (faithif, 2001:db8:46::/96)
//
// The client's default route points at the router, the router forwards IPv6,
// and the server has IPv6 disabled, so the only way from the client to the
// server is through faithif running in the router namespace.
//
// Namespaces are created with the ip(8) command; the veth pairs are created
// directly inside the lab namespaces, so nothing is ever added to the
// namespace the test runs in. Tests open real kernel sockets inside a lab
// namespace with [Namespace.Listen], [Namespace.Dial] and [Namespace.DialFrom]:
// the socket is created on an OS thread switched into the namespace and keeps
// that namespace for its whole life, while the test goroutines use it
// normally.
//
// Every lab registers a cleanup with testing.TB that stops faithif, deletes
// the namespaces and removes its run directory, even when the test fails.
// Namespaces left by an earlier test process that crashed or was killed are
// swept away when the first lab of a process is built: each process holds an
// flock(2) on a lock file named after its namespace prefix, and namespaces
// whose prefix lock is not held by a live process are deleted.
//
// Everything needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN). Missing privileges
// or tools make the test fail, never skip.
package netlab
