package dns64

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/netutil"
	"golang.org/x/sync/singleflight"

	"github.com/faithif/faithif/relay"
)

// maxTCPConns bounds the TCP connections served at once on each listen
// address; more wait in the kernel's backlog. Each holds a descriptor,
// which the relay's flows need more. maxTCPConnsPerClient bounds those of
// one client address, so that one client cannot hold them all: beyond it a
// connection is closed as soon as it is accepted.
const (
	maxTCPConns          = 64
	maxTCPConnsPerClient = 8
)

// Options are what a Responder needs besides its Config.
type Options struct {
	// Policy returns the relay's policy in force (relay.Relay.Policy): an
	// address is handed to a client only if this policy would relay that
	// client to it on some port. Required.
	Policy func() relay.Policy
	// LocalNets reports whether an address is in a network the router has
	// an address in (faithif.LocalNets), for Config.AllowLocalNets.
	LocalNets func(netip.Addr) bool
	// ObserveUpstream, if set, is given every upstream query's duration
	// and how it ended (the metrics' histogram): the RCODE of the answer
	// in lower case (noerror, nxdomain, servfail, refused...), "timeout",
	// or "failed" (no usable answer).
	ObserveUpstream func(upstream string, d time.Duration, result string)
	// Logger receives the responder's log; nil: slog.Default().
	Logger *slog.Logger
	// Now is the clock of the cache and the rate limits; nil: time.Now.
	Now func() time.Time
}

// Responder is a DNS64 server: it answers the queries of allowed clients
// on its listen addresses, over UDP and TCP, from its upstream resolvers,
// synthesizing AAAA records in its prefix from A records for the
// addresses the relay would accept.
type Responder struct {
	cfg    Config
	opts   Options
	log    *slog.Logger
	now    func() time.Time
	up     []*upstream
	cache  *cache
	limit  *limiter
	flight singleflight.Group
	stats  stats
	// inflight holds a token for each upstream query in flight, at most
	// maxInflight.
	inflight chan struct{}

	ctx    context.Context // the upstream queries' context, cancelled by Close
	cancel context.CancelFunc

	mu      sync.Mutex
	conns   []net.PacketConn // bound by Listen
	lns     []net.Listener
	servers []*dns.Server // serving, from Serve on
	closed  bool
}

// New returns the responder cfg describes; it listens once Listen is
// called.
func New(cfg Config, opts Options) (*Responder, error) {
	switch {
	case len(cfg.Listen) == 0:
		return nil, errors.New("dns64: no listen address")
	case len(cfg.Upstreams) == 0:
		return nil, errors.New("dns64: no upstream")
	case opts.Policy == nil:
		return nil, errors.New("dns64: no relay policy")
	case !cfg.Prefix.IsValid():
		return nil, errors.New("dns64: no prefix")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	r := &Responder{cfg: cfg, opts: opts, log: opts.Logger, now: opts.Now,
		cache: newCache(cfg.CacheSize, cacheBudget), limit: newLimiter(cfg.RateLimit),
		inflight: make(chan struct{}, maxInflight)}
	if r.log == nil {
		r.log = slog.Default()
	}
	if r.now == nil {
		r.now = time.Now
	}
	for _, u := range cfg.Upstreams {
		r.up = append(r.up, &upstream{addr: u.String()})
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	return r, nil
}

// Listen binds every listen address, UDP and TCP, so that an address in
// use or not of this machine is an error before anything else starts;
// nothing is answered until Serve. On error nothing stays bound.
func (r *Responder) Listen() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return errors.New("dns64: closed")
	}
	for _, ap := range r.cfg.Listen {
		if err := r.bind(ap); err != nil {
			r.closeSockets()
			return err
		}
	}
	return nil
}

// bind binds ap over UDP, then TCP on the same port. For port 0 (tests)
// that is the port UDP got, tried again with another while TCP has it.
func (r *Responder) bind(ap netip.AddrPort) error {
	for try := 0; ; try++ {
		pc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(ap))
		if err != nil {
			return fmt.Errorf("dns64: listen: %w", err)
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		ln, err := net.Listen("tcp", net.JoinHostPort(ap.Addr().String(), strconv.Itoa(port)))
		if err != nil {
			pc.Close()
			if ap.Port() == 0 && try < 20 {
				continue
			}
			return fmt.Errorf("dns64: listen: %w", err)
		}
		r.conns, r.lns = append(r.conns, pc), append(r.lns, ln)
		return nil
	}
}

// closeSockets closes what Listen bound; r.mu is held.
func (r *Responder) closeSockets() {
	for _, pc := range r.conns {
		pc.Close()
	}
	for _, ln := range r.lns {
		ln.Close()
	}
	r.conns, r.lns = nil, nil
}

// Addrs returns the addresses listened on, each over UDP and TCP, as
// HOST:PORT.
func (r *Responder) Addrs() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := []string{}
	for _, pc := range r.conns {
		out = append(out, pc.LocalAddr().String())
	}
	return out
}

// Upstreams returns the upstream resolvers, in the order they are asked.
func (r *Responder) Upstreams() []string {
	out := make([]string, len(r.up))
	for i, u := range r.up {
		out[i] = u.addr
	}
	return out
}

// Prefix returns the prefix AAAA records are synthesized in.
func (r *Responder) Prefix() netip.Prefix { return r.cfg.Prefix }

// Serve answers on the sockets Listen bound, in the background, until
// Close. It returns once every server runs.
func (r *Responder) Serve() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || len(r.conns) == 0 || len(r.servers) > 0 {
		return errors.New("dns64: not listening, or serving already")
	}
	started := make(chan struct{}, len(r.conns)+len(r.lns))
	notify := func() { started <- struct{}{} }
	for _, pc := range r.conns {
		r.servers = append(r.servers, &dns.Server{PacketConn: pc, Handler: r, MsgAcceptFunc: acceptQuery, MsgInvalidFunc: r.invalid, NotifyStartedFunc: notify})
	}
	for _, ln := range r.lns {
		ln = netutil.LimitListener(newClientListener(ln, maxTCPConnsPerClient), maxTCPConns)
		r.servers = append(r.servers, &dns.Server{Listener: ln, Handler: r, MsgAcceptFunc: acceptQuery, MsgInvalidFunc: r.invalid, NotifyStartedFunc: notify})
	}
	errc := make(chan error, len(r.servers))
	for _, s := range r.servers {
		go func() {
			if err := s.ActivateAndServe(); err != nil {
				errc <- err
			}
		}()
	}
	for range r.servers {
		select {
		case <-started:
		case err := <-errc:
			return fmt.Errorf("dns64: serve: %w", err)
		}
	}
	r.log.Info("dns64 serving", "listen", r.addrsLocked(), "upstreams", r.Upstreams(), "prefix", r.cfg.Prefix.String())
	return nil
}

func (r *Responder) addrsLocked() []string {
	out := []string{}
	for _, pc := range r.conns {
		out = append(out, pc.LocalAddr().String())
	}
	return out
}

// Close stops answering: the sockets are closed and upstream queries in
// flight are abandoned. It may be called more than once.
func (r *Responder) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	r.closed = true
	r.cancel()
	serving := len(r.servers) > 0
	for _, s := range r.servers {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		s.ShutdownContext(ctx) // closes its socket
		cancel()
	}
	r.closeSockets()
	if serving {
		r.log.Info("dns64 stopped", "listen", r.cfg.Listen)
	}
}

// acceptQuery lets every request through to ServeDNS, which answers
// malformed ones itself so that they are counted; answers are ignored.
// What the library cannot unpack it answers FORMERR itself (invalid
// counts it).
func acceptQuery(dh dns.Header) dns.MsgAcceptAction {
	const qr = 1 << 15
	if dh.Bits&qr != 0 {
		return dns.MsgIgnore
	}
	return dns.MsgAccept
}

// invalid counts a message the library could not unpack: with a header
// (and not an answer) it answered FORMERR; shorter, nothing.
func (r *Responder) invalid(m []byte, _ error) {
	const qr = 0x80 // in the header's third byte
	if len(m) < 12 || m[2]&qr != 0 {
		return
	}
	r.stats.queries[qtypeIndex(0)].Add(1)
	r.stats.results[resultFormErr].Add(1)
}

// ServeDNS implements dns.Handler: it answers one query.
func (r *Responder) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	client := addrOf(w.RemoteAddr())
	_, tcp := w.RemoteAddr().(*net.TCPAddr)
	qtype := uint16(0)
	if len(req.Question) > 0 {
		qtype = req.Question[0].Qtype
	}
	r.stats.queries[qtypeIndex(qtype)].Add(1)
	switch {
	case !r.allowed(client):
		r.stats.results[resultNotAllowed].Add(1)
		r.log.Debug("dns64: query refused: client not allowed", "client", client.String())
		r.write(w, req, rcodeMsg(dns.RcodeRefused), tcp)
		if tcp {
			w.Close() // it shall not hold a connection slot
		}
		return
	case !r.limit.allow(client, r.now()):
		r.stats.results[resultRateLimited].Add(1)
		if tcp { // a real client: say no; UDP may be forged, so no answer
			r.write(w, req, rcodeMsg(dns.RcodeRefused), tcp)
		}
		return
	}
	a, res := r.answer(client, req)
	r.stats.results[res].Add(1)
	r.write(w, req, a, tcp)
}

// addrOf returns the IP address of a UDP or TCP address.
func addrOf(a net.Addr) netip.Addr {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.UDPAddr:
		ap = a.AddrPort()
	case *net.TCPAddr:
		ap = a.AddrPort()
	}
	return ap.Addr().Unmap().WithZone("")
}

// allowed reports whether client may ask.
func (r *Responder) allowed(client netip.Addr) bool {
	for _, p := range r.cfg.Allow {
		if p.Contains(client) {
			return true
		}
	}
	return r.cfg.AllowLocalNets && r.opts.LocalNets != nil && r.opts.LocalNets(client)
}

// rcodeMsg is an answer with nothing but an RCODE.
func rcodeMsg(rcode int) *dns.Msg {
	return &dns.Msg{MsgHdr: dns.MsgHdr{Rcode: rcode}}
}

// write sends a as the answer to req: req's ID, question, RD and CD, RA
// set; an OPT record if req had one (with its DO bit); over UDP at most
// what the client can take (512 bytes without EDNS0, and never more than
// ednsSize), truncated with TC set beyond it.
func (r *Responder) write(w dns.ResponseWriter, req, a *dns.Msg, tcp bool) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.RecursionAvailable = true
	m.Rcode = a.Rcode
	m.AuthenticatedData = a.AuthenticatedData
	m.Answer, m.Ns = a.Answer, a.Ns
	for _, rr := range a.Extra {
		if rr.Header().Rrtype != dns.TypeOPT {
			m.Extra = append(m.Extra, rr)
		}
	}
	size := dns.MinMsgSize
	if opt := req.IsEdns0(); opt != nil {
		m.SetEdns0(ednsSize, opt.Do())
		size = max(size, min(int(opt.UDPSize()), ednsSize))
	} else if m.Rcode > 0xF {
		m.Rcode = dns.RcodeServerFailure // an extended RCODE needs OPT
	}
	if tcp {
		size = dns.MaxMsgSize
	}
	m.Truncate(size)
	if err := w.WriteMsg(m); err != nil {
		r.log.Debug("dns64: writing an answer", "client", w.RemoteAddr().String(), "error", err.Error())
	}
}
