// Package instance is a running faithN: the TUN interface (package faithif)
// with its routes, the gVisor stack that captures its flows (package stack),
// the relay that decides and carries them (package relay), its control
// socket (package control), and its life: start, drain, stop, reload,
// status.
//
// Both `faithif create` (one instance) and `faithif run` (several, through
// package appliance) run their interfaces as Instances; a Set is the
// instances one process serves, as its metrics describe them.
package instance
