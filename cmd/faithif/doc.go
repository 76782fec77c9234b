// Command faithif creates and manages faith(4)-style interfaces on Linux:
// IPv6 TCP flows routed to faithN are terminated in userspace and relayed to
// the IPv4 address embedded in their destination.
//
// This package only parses the command line and prints: `create` and `run`
// check their settings with package config and run package instance (or
// appliance); `show`, `destroy`, `reload` and `sysctl` talk to running
// instances through package control.
package main
