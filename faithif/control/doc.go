// Package control is the control socket of a running faithN, like
// wireguard-go's UAPI socket: the `faithif` commands (show, destroy, reload,
// sysctl, flows) talk to a running instance through it, one JSON request and
// one JSON answer per connection. The socket lives in the run directory
// (faithif.RunDir), mode 0600. An answer is read up to 4 MiB, the flow
// table ("flows", filtered by the instance) up to 256 MiB: 15,000 flows
// take about 5 MiB.
//
// A request may be at most MaxRequest (64 KiB) long: the server reads no
// more than that, answers a longer one with an error and closes the
// connection, so a huge request costs it no memory. Each connection has 5 s
// to send its request and read the answer.
//
// At most MaxConns (16) connections are served at once. Beyond that the
// server does not accept: further connections wait in the kernel's listen
// queue (up to net.core.somaxconn of them), where they cost no goroutine
// and no buffer, and are accepted in the order they came as served ones end
// (each within 5 s). Waiting rather than accepting them only to refuse them
// with an error answer means that a command is delayed, not refused, while
// slow clients hold every slot; and since the queue is first come, first
// served, a client that keeps reopening slow connections cannot starve one
// already waiting (such as a destroy).
//
// An instance whose socket is removed, or replaced by another file, can no
// longer be reached, and stops (Server.Removed), as wireguard-go's does.
// The socket refuses to destroy an interface of `faithif run` (the Owner
// of its status): the appliance stops only as a whole.
//
// A client believes an answer only from a socket in a run directory it
// trusts, owned by root or by its own user, and served by a process running
// as one of them (SO_PEERCRED): a socket planted by another user is never
// obeyed.
package control
