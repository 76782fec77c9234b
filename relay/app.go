package relay

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/faithif/faithif/relay/flow"
)

// App is an application relay: it carries a protocol that writes addresses
// into its payload, such as FTP (package relay/ftp), which a byte copy
// cannot take from IPv6 to IPv4.
//
// The hook is the copy step, and only that. The relay picks an App by the
// flow's destination port (Config.Apps); everything up to the copy is done
// for the flow as for any other: mapping, access rules, limits, the IPv4
// dial, the client's handshake, the "flow accepted" line. Then, instead of
// starting its copy loop, the relay hands both connections to the App in an
// AppFlow, and once the App returns it counts and logs the flow's end as
// for any flow (flows_ended_total, "flow finished" with the bytes the App
// read from each side). `faithif flows` lists the flow meanwhile, with
// those bytes.
type App interface {
	// Relay carries f until it ends and returns how it ended, with the
	// error that ended it (nil for EndClosed). By then it has closed or
	// aborted f.Client and f.Server and ended every connection and
	// goroutine of its own. It runs on a goroutine of its own, and must
	// return soon after ctx is done (the relay is stopping: EndShutdown).
	//
	// It may instead return ErrPlain, having passed on everything it had
	// read and ended its own connections: the relay then copies the rest
	// of the flow as plain bytes with its copy loop.
	Relay(ctx context.Context, f *AppFlow) (End, error)
}

// ErrPlain, returned by an App's Relay, hands the rest of the flow back to
// the relay's copy loop, as plain bytes (FTP after AUTH TLS, whose commands
// can no longer be read).
var ErrPlain = errors.New("relay the rest of the flow as plain bytes")

// AppFlow is one flow an App carries.
type AppFlow struct {
	// Client is the IPv6 client's connection and Server the IPv4
	// server's. What is read from them is what the flow's counters,
	// `faithif flows` and its "flow finished" line report; a read that
	// returns io.EOF marks that side's FIN.
	Client, Server flow.Conn
	// ClientAddr is the IPv6 client; Dst6 the FAITH address and port it
	// connected to; Dst4 the IPv4 server; Src4 the relay's own end of the
	// IPv4 connection, an address of the router's.
	ClientAddr, Dst6, Dst4, Src4 netip.AddrPort
	// IdleTimeout is the relay's idle timeout (negative: never), for the
	// App to apply; DialTimeout bounds a connection the App opens.
	IdleTimeout, DialTimeout time.Duration
	// Log is the flow's logger: its lines carry client, dst6 and dst4.
	Log *slog.Logger

	stats pipeStats // the relay's byte counters; zero in an AppFlow a test makes
}

// SpliceResult is how a Splice ended.
type SpliceResult struct {
	ClientToServer, ServerToClient uint64 // bytes
	End                            End
	Err                            error // what ended it, nil for EndClosed
}

// Splice copies between client and server, two connections of the App's
// own (an FTP data connection), as the relay copies a flow: a FIN from one
// side is a half-close of the other, a RST or an error resets both, and
// both are reset after f.IdleTimeout with nothing moving or once ctx is
// done. It returns when the copy is over and both connections are closed.
// The bytes count in the relay's bytes_total, not in f's own counters.
func (f *AppFlow) Splice(ctx context.Context, client, server flow.Conn) SpliceResult {
	ch := make(chan pipeResult, 1)
	newPipe(client, server, f.stats, func(res pipeResult) { ch <- res }).run(ctx, f.IdleTimeout)
	res := <-ch
	return SpliceResult{ClientToServer: res.ClientToServer, ServerToClient: res.ServerToClient, End: res.End, Err: res.Err}
}

// NewKernelConn adapts a kernel TCP connection to flow.Conn as the relay
// adapts its own IPv4 connections: Read reports the peer's FIN as io.EOF,
// Abort resets the connection (SO_LINGER 0), and the copy loop reads it
// without holding a buffer while it idles.
func NewKernelConn(c *net.TCPConn) (flow.Conn, error) { return newKernelConn(c) }

// runApp lets app carry the accepted flow f between c and server, counting
// what it reads in m, then ends the flow with done; or, if the App hands
// the flow back (ErrPlain), copies the rest with a pipe that counts on in
// m.
func (r *Relay) runApp(app App, f *flowSetup, c flow.Conn, server *kernelConn, m *meter, done func(pipeResult)) {
	stats := r.pipeStats()
	af := &AppFlow{
		Client:     &meteredConn{Conn: c, m: m, n: &m.c2s, live: stats.ClientToServer, fin: finClient},
		Server:     &meteredConn{Conn: server, m: m, n: &m.s2c, live: stats.ServerToClient, fin: finServer},
		ClientAddr: f.tuple.client, Dst6: f.tuple.dest, Dst4: f.to, Src4: f.src4,
		IdleTimeout: r.cfg.IdleTimeout, DialTimeout: r.cfg.DialTimeout, Log: f.log, stats: stats,
	}
	end, err := app.Relay(r.ctx, af)
	if errors.Is(err, ErrPlain) {
		newMeteredPipe(c, server, m, stats, done).run(r.ctx, r.cfg.IdleTimeout)
		return
	}
	done(pipeResult{ClientToServer: m.c2s.Load(), ServerToClient: m.s2c.Load(), End: end, Err: err})
}

// meteredConn counts what is read from a Conn in a flow's meter (n, one
// of its directions) and in the relay's counter live, and marks fin in it
// when the read returns the peer's FIN.
type meteredConn struct {
	flow.Conn
	m       *meter
	n, live *atomic.Uint64
	fin     uint32
}

// Read reads from the Conn and counts what it read.
func (c *meteredConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.n.Add(uint64(n))
		if c.live != nil {
			c.live.Add(uint64(n))
		}
		c.m.touch()
	}
	if errors.Is(err, io.EOF) {
		c.m.fins.Or(c.fin)
	}
	return n, err
}
