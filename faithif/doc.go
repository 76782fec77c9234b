// Package faithif is the emulated faith(4) interface itself: it creates and
// removes the TUN device, sets its MTU and link state and installs its routes
// through netlink, keeps the run directory, one per network namespace, with
// its net.inet6.ip6.keepfaith value (as BSD keeps one per network stack),
// tracks the router's own IPv4 addresses, and
// reads and writes the kernel parameters a router needs. It knows nothing of
// TCP.
//
// Its subpackages are what a running interface is made of: config (the
// configuration and its checks), instance (one running faithN), appliance
// (`faithif run`: several, from one file), control (the control socket),
// status (what an instance reports) and metrics (Prometheus and health over
// HTTP).
package faithif
