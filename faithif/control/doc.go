// Package control is the control socket of a running faithN, like
// wireguard-go's UAPI socket: the `faithif` commands (show, destroy, reload,
// sysctl) talk to a running instance through it, one JSON request and one
// JSON answer per connection. The socket lives in the run directory
// (faithif.RunDir), mode 0600.
//
// A request may be at most MaxRequest (64 KiB) long: the server reads no
// more than that, answers a longer one with an error and closes the
// connection, so a huge request costs it no memory. A client believes an
// answer only from a socket in a run directory it trusts, owned by root or
// by its own user, and served by a process running as one of them
// (SO_PEERCRED): a socket planted by another user is never obeyed.
package control
