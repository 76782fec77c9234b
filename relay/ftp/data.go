package ftp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/faithif/faithif/relay"
	"github.com/faithif/faithif/relay/flow"
)

// passive answers the server's 227, the reply to the PASV the relay sent
// for the client's EPSV or LPSV: it claims the flows from the client to the
// FAITH address at the server's passive port, answers 229 (or 228) with
// that port, and relays the connection the client makes there to the
// server's passive address. It returns the reply for the client.
func (s *session) passive(k kind, reply string) string {
	to, err := parsePASV(reply)
	if err != nil {
		s.logRefusal("ftp: PASV reply unreadable", "error", err.Error())
		return "425 Can't open data connection: the server's PASV reply could not be read.\r\n"
	}
	if to.Port() == 0 {
		s.logRefusal("ftp: PASV reply names port 0", "pasv", to.String())
		return "425 Can't open data connection: the server's PASV reply names port 0.\r\n"
	}
	if to.Addr() != s.f.Dst4.Addr() {
		// A server behind NAT, or with pasv_address, names another
		// address: the relay connects to the server's own at the port
		// named, as modern clients do, and never anywhere else (no
		// bounce through the relay to another host).
		s.log.Debug("ftp: the address in the server's PASV reply ignored: connecting to the server's own", "pasv", to.String(), "server", s.f.Dst4.Addr().String())
		to = netip.AddrPortFrom(s.f.Dst4.Addr(), to.Port())
	}
	s.closeData()
	local := netip.AddrPortFrom(s.f.Dst6.Addr(), to.Port())
	ln, err := s.r.cfg.Network.Listen(s.f.ClientAddr.Addr(), local)
	if err != nil {
		s.log.Warn("ftp: cannot listen for a passive data connection", "error", err.Error())
		return "425 Can't open data connection.\r\n"
	}
	d := &dataSetup{closeFn: func() { ln.Close() }}
	s.setData(d)
	s.dataWG.Add(1)
	go s.passiveData(d, ln, to)
	if k == kindLPSV {
		return lpsvReply(local)
	}
	return epsvReply(local.Port())
}

// passiveData waits for the client's data connection on ln, then dials
// the server's passive address to from the relay's address of the control
// connection (vsftpd, for one, accepts a data connection only from there),
// and relays the two. The client's handshake completes only once the
// server has answered, as for any flow.
func (s *session) passiveData(d *dataSetup, ln flow.Listener, to netip.AddrPort) {
	defer s.dataWG.Done()
	ctx, cancel := context.WithTimeout(s.ctx, s.r.cfg.DataTimeout)
	req, err := ln.Accept(ctx)
	cancel()
	if err != nil {
		d.close()
		s.expired(err, "passive")
		return
	}
	dialer := net.Dialer{LocalAddr: &net.TCPAddr{IP: s.f.Src4.Addr().AsSlice()}, Timeout: s.f.DialTimeout}
	nc, err := dialer.DialContext(s.ctx, "tcp4", to.String())
	// One connection per announcement. The claim ends only now that the
	// server's passive port has taken the relay's connection: until then
	// another client's connection to the port is still reset, not relayed
	// there ahead of this one.
	d.close()
	if err != nil {
		req.Refuse(flow.RefuseReset)
		s.log.Info("ftp: passive data connection failed", "to", to.String(), "error", err.Error())
		return
	}
	server, err := relay.NewKernelConn(nc.(*net.TCPConn))
	if err != nil {
		nc.Close()
		req.Refuse(flow.RefuseReset)
		return
	}
	client, err := req.Accept()
	if err != nil {
		server.Abort()
		s.log.Info("ftp: passive data connection failed", "client", req.Client().String(), "error", err.Error())
		return
	}
	s.r.stats.passive.Add(1)
	s.splice(client, server, "passive", req.Client(), to)
}

// active sends the client's EPRT or LPRT on as PORT: it listens on the
// relay's own IPv4 address of the control connection, sends PORT with that
// address, and once the server connects there, connects from the FAITH
// address to the client's. The address must be the client's own, and its
// port not a privileged one (RFC 2577): else it would be an FTP bounce. It
// reports whether to read on.
func (s *session) active(verb string, to netip.AddrPort) bool {
	if to.Addr() != s.f.ClientAddr.Addr() || to.Port() < 1024 {
		s.r.stats.bounces.Add(1)
		s.logRefusal("ftp: "+verb+" refused: not the client's own address, or a privileged port (FTP bounce)", "eprt", to.String())
		s.local(fmt.Sprintf("504 %s refused: a data connection goes only to your own address %s, to a port from 1024 on.\r\n", verb, s.f.ClientAddr.Addr()))
		return true
	}
	s.closeData()
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: s.f.Src4.Addr().AsSlice()})
	if err != nil {
		s.log.Warn("ftp: cannot listen for an active data connection", "error", err.Error())
		s.local("425 Can't open data connection.\r\n")
		return true
	}
	d := &dataSetup{closeFn: func() { ln.Close() }, ready: make(chan struct{})}
	s.setData(d)
	port := ln.Addr().(*net.TCPAddr).AddrPort().Port()
	s.dataWG.Add(1)
	go s.activeData(d, ln, to)
	return s.send(pending{kind: kindPORT, data: d}, portCommand(netip.AddrPortFrom(s.f.Src4.Addr(), port)), true)
}

// activeData waits on ln for the server's data connection (one from
// another address is reset, and the wait goes on), then connects from the
// FAITH address to the client's address to, and relays the two. If the
// client cannot be reached the server's connection is reset, so that the
// server answers the transfer with an error.
func (s *session) activeData(d *dataSetup, ln *net.TCPListener, to netip.AddrPort) {
	defer s.dataWG.Done()
	defer d.done(false) // unless it failed, below
	defer d.close()
	stop := context.AfterFunc(s.ctx, d.close)
	defer stop()
	ln.SetDeadline(time.Now().Add(s.r.cfg.DataTimeout))
	var nc *net.TCPConn
	var from netip.AddrPort
	for {
		c, err := ln.AcceptTCP()
		if err != nil {
			s.expired(err, "active")
			return
		}
		from = c.RemoteAddr().(*net.TCPAddr).AddrPort()
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		if from.Addr() == s.f.Dst4.Addr() {
			nc = c
			break
		}
		s.r.stats.bounces.Add(1)
		s.logRefusal("ftp: active data connection refused: not from the server", "from", from.String())
		c.SetLinger(0)
		c.Close()
	}
	d.close()
	server, err := relay.NewKernelConn(nc)
	if err != nil {
		nc.Close()
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.f.DialTimeout)
	client, err := s.r.cfg.Network.Dial(ctx, netip.AddrPortFrom(s.f.Dst6.Addr(), 0), to)
	cancel()
	if err != nil {
		server.Abort()
		d.done(true)
		s.log.Info("ftp: active data connection to the client failed", "to", to.String(), "error", err.Error())
		return
	}
	s.r.stats.active.Add(1)
	d.done(false) // the server's 150 may go to the client now
	s.splice(client, server, "active", to, from)
}

// expired counts and logs a data listener that ended without a
// connection: after the data timeout, or closed (superseded, or the
// session over), which is not worth a line.
func (s *session) expired(err error, mode string) {
	if s.ctx.Err() == nil && isTimeout(err) {
		s.r.stats.expired.Add(1)
		s.log.Info("ftp: data listener closed unused after the data timeout", "mode", mode, "timeout", s.r.cfg.DataTimeout.String())
	}
}

// splice relays a data connection between client and server; the control
// connection is not idle meanwhile.
func (s *session) splice(client, server flow.Conn, mode string, c6, s4 netip.AddrPort) {
	s.dataActive.Add(1)
	res := s.f.Splice(s.ctx, client, server)
	s.dataActive.Add(-1)
	s.touch()
	attrs := []any{"mode", mode, "data_client", c6.String(), "data_server", s4.String(), "end", string(res.End),
		"bytes_client_to_server", res.ClientToServer, "bytes_server_to_client", res.ServerToClient}
	if res.Err != nil && !errors.Is(res.Err, context.Canceled) {
		attrs = append(attrs, "error", res.Err.Error())
	}
	s.log.Debug("ftp: data connection finished", attrs...)
}
