package relay

import (
	"context"
	"errors"
	"net"
	"syscall"
	"time"

	"github.com/faithif/faithif/relay/flow"
)

// fdReserve is how many file descriptors the relay leaves for everything
// that is not a flow: the TUN, netlink, the control socket, logs.
const fdReserve = 32

// fdLimitEvery is how often the relay rereads the open-files limit, so that
// a limit changed at run time (prlimit) is honoured without a getrlimit
// call per flow.
const fdLimitEvery = time.Second

// fdLimit returns FDLimit, reread at most every fdLimitEvery.
func (r *Relay) fdLimit() uint64 {
	now := time.Now().UnixNano()
	if now-r.fdLimitAt.Load() < int64(fdLimitEvery) {
		return r.fdLimitVal.Load()
	}
	v := FDLimit()
	r.fdLimitVal.Store(v)
	r.fdLimitAt.Store(now)
	return v
}

// FDLimit returns the open-files limit in force (0 if unknown); one relayed
// flow needs one. Go raises the soft limit to the hard one when the process
// starts.
func FDLimit() uint64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	return rl.Cur
}

// dialFailure names why an IPv4 dial failed, for logs, and chooses the
// answer whose errno at the client tells the same thing.
func dialFailure(err error) (string, flow.Refusal) {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET):
		// ECONNRESET: the server's RST came during the connect.
		return "connection-refused", flow.RefuseReset
	case errors.Is(err, syscall.EHOSTUNREACH):
		return "host-unreachable", flow.RefuseAddrUnreachable
	case errors.Is(err, syscall.ENETUNREACH):
		return "network-unreachable", flow.RefuseNoRoute
	case errors.Is(err, syscall.EINVAL):
		// What connect(2) says for a destination behind a blackhole route.
		return "blackhole", flow.RefuseAddrUnreachable
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return "prohibited", flow.RefuseProhibited
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return reasonFDLimit, flow.RefuseReset
	case errors.Is(err, context.Canceled):
		return "shutdown", flow.RefuseReset
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout", flow.RefuseAddrUnreachable
	default:
		// Anything else (EADDRNOTAVAIL, ENOBUFS, ...) is faithif's own
		// trouble, not the destination's: a RST says "not now".
		return "error", flow.RefuseReset
	}
}
