package relay

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"

	"github.com/faithif/faithif/relay/flow"
)

// fdReserve is how many file descriptors the relay leaves for everything
// that is not a flow: the TUN, netlink, the control socket, logs.
const fdReserve = 32

// Refusal reasons of the dial's own limits.
const (
	// reasonFDLimit: faithif is (nearly) out of descriptors.
	reasonFDLimit = "fd-limit"
	// reasonDials: Limits.MaxHandshakesTotal IPv4 connections are being
	// set up.
	reasonDials = "dials"
)

// startDial reserves a place among the IPv4 connections being set up
// (Relay.dialing), in either order, and checks that a descriptor is left
// for it; if not, it returns the refusal reason (reasonDials,
// reasonFDLimit) and attributes to log, and reserves nothing. This is the
// one global bound on dials: a dial-first flow is in the stack's handshake
// table as well, but a handshake-first flow left it at Accept and is bound
// otherwise only by its client's per-address and per-/64 limits, so
// without it clients with enough /64s could hold a dial each to a server
// that never answers until the descriptors ran out. A reserved place is
// given back when the flow is relayed (Relay.relay) or fails.
func (r *Relay) startDial() (reason string, attrs []any) {
	n := r.dialing.Add(1)
	if limit := int64(r.cfg.Limits.MaxHandshakesTotal); n > limit {
		r.dialing.Add(-1)
		return reasonDials, []any{"dials_in_progress", n - 1, "max_handshakes", limit}
	}
	if short, attrs := r.fdShort(n - 1); short {
		r.dialing.Add(-1)
		return reasonFDLimit, attrs
	}
	return "", nil
}

// fdShort reports whether one more descriptor would eat into fdReserve,
// with the relayed flows and dialing other IPv4 connections being set up
// each holding one, and if so the attributes to log.
func (r *Relay) fdShort(dialing int64) (bool, []any) {
	lim := r.fdLimit()
	open := r.stats.open.Load()
	if lim == 0 || uint64(open+dialing)+fdReserve < lim {
		return false, nil
	}
	return true, []any{"fd_limit", lim, "flows_open", open, "dials_in_progress", dialing}
}

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
	case errors.Is(err, ErrNoReservedPort):
		// Every reserved port is taken: as a server that refuses, a
		// RST now (the client may retry), counted as refused.
		return reasonNoReservedPort, flow.RefuseReset
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

// dial connects to the flow's IPv4 server; afterHandshake says the
// client's handshake came first (under pressure).
func (r *Relay) dial(f *flowSetup, afterHandshake bool) (*kernelConn, time.Duration, error) {
	if f.debug {
		order := "dial-first"
		if afterHandshake {
			order = "handshake-first"
		}
		attrs := []any{"order", order}
		if f.bind4.IsValid() {
			attrs = append(attrs, "bind4", f.bind4.String())
		}
		if f.reserved {
			attrs = append(attrs, "reserved_port", true)
		}
		f.log.Debug("dial started", attrs...)
	}
	dialStart := time.Now()
	var nc net.Conn
	var err error
	dialOnce := func(d *net.Dialer) (net.Conn, error) {
		if r.dialVia != nil {
			return r.dialVia(r.ctx, d, f.to.String())
		}
		return d.DialContext(r.ctx, "tcp4", f.to.String())
	}
	if f.reserved {
		nc, err = dialReserved(f.dialer, f.bind4, dialOnce)
	} else {
		nc, err = dialOnce(f.dialer)
	}
	took := time.Since(dialStart)
	if r.cfg.ObserveDial != nil {
		r.cfg.ObserveDial(took, err == nil)
	}
	var server *kernelConn
	if err == nil {
		if server, err = newKernelConn(nc.(*net.TCPConn)); err != nil {
			nc.Close()
		} else if f.proxy {
			if err = sendProxyHeader(server, f.tuple); err != nil {
				server.Abort()
				server = nil
			}
		}
	}
	if f.debug {
		if err != nil {
			f.log.Debug("dial finished", "result", "failed", "dial_seconds", took.Seconds(), "error", err.Error())
		} else {
			f.log.Debug("dial finished", "result", "ok", "dial_seconds", took.Seconds(), "src4", server.localAddrPort().String())
		}
	}
	if err != nil {
		return nil, took, err
	}
	return server, took, nil
}

// sendProxyHeader writes the flow's PROXY protocol v2 header on a new IPv4
// connection, before any byte of the client's. The header (52 bytes) fits
// in the empty send buffer of a new socket, so the write does not wait.
func sendProxyHeader(server *kernelConn, t fourTuple) error {
	h, err := proxyHeader(t.client, t.dest)
	if err != nil {
		return err
	}
	if _, err := server.Write(h); err != nil {
		return fmt.Errorf("send PROXY protocol header: %w", err)
	}
	return nil
}
