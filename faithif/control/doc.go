// Package control is the control socket of a running faithN, like
// wireguard-go's UAPI socket: the `faithif` commands (show, destroy, reload,
// sysctl) talk to a running instance through it, one JSON request and one
// JSON answer per connection. The socket lives in the run directory
// (faithif.RunDir), mode 0600.
package control
