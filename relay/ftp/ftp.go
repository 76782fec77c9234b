package ftp

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/faithif/faithif/relay"
	"github.com/faithif/faithif/relay/flow"
)

// DefaultPort is the FTP control port: faithif relays FTP on it unless
// configured otherwise (ftp_ports, --ftp-ports).
const DefaultPort = 21

// DefaultDataTimeout is how long a data listener waits for its connection
// (the client's after EPSV, the server's after EPRT), as vsftpd's
// accept_timeout.
const DefaultDataTimeout = 60 * time.Second

// Config configures a Relay.
type Config struct {
	// Network is the stack: where data connections on FAITH addresses are
	// listened for and opened.
	Network flow.Network
	// DataTimeout bounds the wait for a data connection; zero:
	// DefaultDataTimeout.
	DataTimeout time.Duration
}

// Relay is the FTP application relay, a relay.App: give it to the relay
// for the FTP control ports (relay.Config.Apps).
type Relay struct {
	cfg   Config
	stats stats
}

var _ relay.App = (*Relay)(nil)

// New returns an FTP Relay.
func New(cfg Config) *Relay {
	if cfg.DataTimeout <= 0 {
		cfg.DataTimeout = DefaultDataTimeout
	}
	return &Relay{cfg: cfg}
}

// Relay carries one FTP control connection, translating its data commands,
// until it ends (relay.App).
func (r *Relay) Relay(ctx context.Context, f *relay.AppFlow) (relay.End, error) {
	r.stats.sessions.Add(1)
	s := newSession(ctx, r, f)
	return s.run()
}

// stats are a Relay's live counters.
type stats struct {
	sessions, translated, refused, bounces atomic.Uint64
	passive, active, expired, tls          atomic.Uint64
}

// Counters is a snapshot of a Relay's counters. The struct tags describe
// each for every reader, as relay.Counters' do (see package faithif/status).
type Counters struct {
	Sessions uint64 `json:"ftp_sessions_total" text:"ftp,sessions" metric:"counter ftp_sessions_total" help:"FTP control connections the FTP relay carried."`
	// Translated counts EPSV and LPSV sent on as PASV, EPRT and LPRT as
	// PORT.
	Translated uint64 `json:"ftp_commands_translated_total" text:"ftp,commands translated" metric:"counter ftp_commands_translated_total" help:"FTP data commands translated for the IPv4 server: EPSV and LPSV sent on as PASV, EPRT and LPRT as PORT."`
	// Refused counts the commands answered by the relay with a 5xx: data
	// commands (but for bounce attempts, Bounces) and command lines over
	// 8 KiB.
	Refused uint64 `json:"ftp_commands_refused_total" text:"ftp,commands refused" metric:"counter ftp_commands_refused_total" help:"FTP commands the relay answered itself with a 5xx: PORT and PASV (they cannot carry IPv6), IPv4 or malformed EPRT, LPRT, EPSV, data commands other than EPSV after EPSV ALL, command lines over 8 KiB."`
	// Bounces counts data connections refused for their address: an EPRT
	// or LPRT address not the client's own or a privileged port (an FTP
	// bounce), a connection to an
	// active-mode data listener from another address than the server's.
	Bounces uint64 `json:"ftp_bounces_refused_total" text:"ftp,bounces refused" metric:"counter ftp_bounces_refused_total" help:"FTP data connections refused for their address: EPRT or LPRT naming another address than the client's own or a privileged port (FTP bounce), a connection to an active data listener from another address than the server's."`
	// Passive and Active count the data connections relayed.
	Passive uint64 `json:"ftp_data_connections_passive_total" text:"ftp,data passive" metric:"counter ftp_data_connections_total mode=passive" help:"FTP data connections relayed, by mode: passive (EPSV, LPSV), active (EPRT, LPRT)."`
	Active  uint64 `json:"ftp_data_connections_active_total" text:"ftp,data active" metric:"counter ftp_data_connections_total mode=active" help:"FTP data connections relayed, by mode: passive (EPSV, LPSV), active (EPRT, LPRT)."`
	// Expired counts data listeners closed after DataTimeout with no
	// connection.
	Expired uint64 `json:"ftp_data_listeners_expired_total" text:"ftp,data listeners expired" metric:"counter ftp_data_listeners_expired_total" help:"FTP data listeners closed unused after the data timeout (60 s)."`
	// TLS counts the sessions whose control connection turned to TLS.
	TLS uint64 `json:"ftp_tls_sessions_total" text:"ftp,tls sessions" metric:"counter ftp_tls_sessions_total" help:"FTP sessions whose control connection turned to TLS (AUTH TLS): relayed as plain bytes from then on, their data commands no longer translated."`
}

// Counters returns a snapshot of the counters; a nil Relay (no FTP ports)
// has all zero.
func (r *Relay) Counters() Counters {
	if r == nil {
		return Counters{}
	}
	s := &r.stats
	return Counters{
		Sessions: s.sessions.Load(), Translated: s.translated.Load(), Refused: s.refused.Load(),
		Bounces: s.bounces.Load(), Passive: s.passive.Load(), Active: s.active.Load(),
		Expired: s.expired.Load(), TLS: s.tls.Load(),
	}
}

// errIdle ends a session idle for the idle timeout.
var errIdle = errors.New("idle timeout")
