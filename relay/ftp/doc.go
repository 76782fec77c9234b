// Package ftp is faithif's FTP relay, an application relay (relay.App): FTP
// writes addresses into its commands and replies, so an IPv6 client's FTP
// session needs more than a byte copy to reach an IPv4 server. faithd did
// this; this package does it without faithd's bugs.
//
// The relay picks it by the control connection's destination port (21 by
// default; ftp_ports, --ftp-ports) and hands it the flow once both
// connections are made, as for any flow (mapping, rules, limits, dial
// first). It then reads the control connection as lines, both ways:
//
//   - Commands are lines (a command split over segments, or several in one,
//     are the same to it). EPSV and LPSV go to the server as PASV, EPRT and
//     LPRT as PORT; every other command goes on as it came. `EPSV ALL` is
//     answered by the relay (the IPv4 server knows no such thing) and
//     honoured: from then on LPSV, EPRT and LPRT are refused. PORT and PASV
//     from the client are refused with a 502: they cannot carry an IPv6
//     address. A command line over 8 KiB is refused.
//   - Replies are read whole (multi-line ones too) and matched to the
//     commands in order, as a server answers them: each command gets one
//     final reply (2xx-5xx), after any preliminary ones (1xx). The 227
//     answering a translated PASV becomes 229 (EPSV) or 228 (LPSV); every
//     other reply goes on as it came, passed on line by line. A reply of
//     the relay's own (a refusal) waits for the replies to the commands
//     before it, so that a pipelining client reads them in order.
//
// Data connections. The FAITH address the client connected to is not the
// kernel's: it exists only inside faithif's gVisor stack. So the client's
// side of a data connection is made there, through flow.Network (package
// stack implements it), and the server's side with kernel sockets from the
// relay's own IPv4 address of the control connection (vsftpd, for one,
// accepts data connections only from the control connection's peer):
//
//   - Passive (EPSV, LPSV): the server's 227 names its address and port Q.
//     The relay claims, in the stack, the flows from the client's address
//     to the FAITH address at port Q (flow.Network.Listen) and answers 229
//     with port Q. The client's connection there is handed to the relay
//     instead of being relayed as a flow of its own; the relay connects to
//     the server's own address at port Q and, once the server has answered,
//     completes the client's handshake (dial first, as for any flow; a
//     server that refuses gives the client a RST). Port Q on the FAITH
//     address is also where the connection would have gone unclaimed (the
//     server's own address, port Q), so a client that comes too late, after
//     the claim ended, reaches the same server port as an ordinary flow.
//     Only the client's own address is claimed, and while the claim is
//     open other clients' connections to that port are reset (counted in
//     the stack's claimed_flows_refused_total): relayed, they would reach
//     the server from the relay's address, as the client's, and could
//     take its download or feed its upload.
//   - Active (EPRT, LPRT): the relay listens on its own IPv4 address (a
//     kernel socket, a free port), sends PORT with it, and once the server
//     connects there, connects from the FAITH address (any free port) to
//     the client's EPRT address (flow.Network.Dial, a gVisor connection
//     whose segments leave through the TUN device as any flow's). If the
//     client cannot be reached, the server's connection is reset, so the
//     server answers the transfer with an error. The server's preliminary
//     reply (150) to the transfer, and what follows it, is held until the
//     connection to the client is made: vsftpd sends 150, the data and 226
//     as soon as it has connected, and a client still waiting for its data
//     connection (curl) would fail on them. If the client cannot be
//     reached it gets 425 instead, and none of the server's replies to the
//     transfer.
//
// Each announced data connection is taken once, then its listener closes;
// a listener still unused when the next EPSV or EPRT comes, when the
// control connection ends, or after the data timeout (60 s, counted in
// ftp_data_listeners_expired_total) closes too. A data connection is
// copied as any flow (half-close, RST, idle timeout) and counts in the
// interface's bytes. Any number of transfers follow one another on one
// control connection.
//
// Refused, unlike faithd, as FTP bounce attacks: an EPRT or LPRT address
// other than the client's own, or a privileged port (RFC 2577), gets a 504;
// a connection to an active data listener from another address than the
// server's is reset (its source port is not checked: vsftpd connects from
// port 20, or from any port with connect_from_port_20=NO, so the server's
// own address is all that can be). Both count in ftp_bounces_refused_total. The address
// a 227 names is never connected to: the relay connects to the server's
// own address (the control connection's peer) at the port named, so a
// server behind NAT or with another pasv_address works, as with modern
// clients, and no server can send the relay elsewhere (logged at debug).
//
// Encryption: after the server's 234 to AUTH (TLS), the control connection
// is TLS, which the relay cannot read. It passes on what it has read and
// hands the flow back to the relay's copy loop (relay.ErrPlain), which
// copies the rest as plain bytes; this is logged once per session and
// counted (ftp_tls_sessions_total). Data commands are no longer translated
// then: the IPv4 server itself answers them, EPRT with an error, EPSV
// with a port that the client reaches as an ordinary flow where the access
// rules permit it. The client sees the server's answer, never a hang; a
// server that closes instead of answering AUTH is a FIN as any other.
//
// The control connection ends as any flow: a FIN either way is a
// half-close of the other side (after what was read before it), a RST or
// error resets both sides and the session's data connections. It is reset
// after the idle timeout with nothing moving on it, except while one of its
// data connections is relayed (a long transfer keeps its control
// connection).
package ftp
