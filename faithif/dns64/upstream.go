package dns64

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// ednsSize is the UDP payload size faithif advertises, upstream and to its
// clients, and the largest answer it sends a client over UDP: 1232 bytes
// fit any path's MTU without fragments (DNS flag day 2020).
const ednsSize = 1232

// maxInflight bounds the upstream queries in flight at once: each holds a
// socket, a file descriptor the relay's flows need more. Beyond it a query
// gets SERVFAIL at once (results{overloaded}).
const maxInflight = 256

// backoff is how long an upstream that timed out, failed or answered
// SERVFAIL or REFUSED is asked only after the others (as unbound and BIND
// do); then it is asked in its turn again, and so probed.
const backoff = 30 * time.Second

var (
	// errAllFailed means no upstream answered.
	errAllFailed = errors.New("no upstream answered")
	// errOverloaded means maxInflight upstream queries are in flight.
	errOverloaded = errors.New("too many upstream queries in flight")
)

// lookup returns the upstream answer to one question, from the cache if it
// is there, else from the upstreams: concurrent lookups of one question
// share one upstream query. The answer is the caller's own copy.
func (r *Responder) lookup(name string, qtype, qclass uint16, do, cd bool) (*dns.Msg, error) {
	k := cacheKey{name: strings.ToLower(dns.Fqdn(name)), qtype: qtype, qclass: qclass, do: do, cd: cd}
	if m, ok := r.cache.get(k, r.now()); ok {
		r.stats.cacheHits.Add(1)
		return m, nil
	}
	r.stats.cacheMisses.Add(1)
	v, err, _ := r.flight.Do(fmt.Sprintf("%s/%d/%d/%t/%t", k.name, k.qtype, k.qclass, k.do, k.cd), func() (any, error) {
		select {
		case r.inflight <- struct{}{}:
			defer func() { <-r.inflight }()
		default:
			return nil, errOverloaded
		}
		m, err := r.exchange(k)
		if err == nil {
			r.cache.put(k, m, r.now())
		}
		return m, err
	})
	if err != nil {
		return nil, err
	}
	return v.(*dns.Msg).Copy(), nil
}

// exchange asks the upstreams k, in order, those backed off last, until
// one answers with something other than SERVFAIL, REFUSED, NOTIMP or
// FORMERR; if all answer so, the last such answer is returned, and if none
// answers at all, errAllFailed.
func (r *Responder) exchange(k cacheKey) (*dns.Msg, error) {
	q := new(dns.Msg)
	q.SetQuestion(k.name, k.qtype)
	q.Question[0].Qclass = k.qclass
	q.RecursionDesired = true
	q.CheckingDisabled = k.cd
	q.SetEdns0(ednsSize, k.do)
	ctx, cancel := context.WithTimeout(r.ctx, time.Duration(len(r.up))*r.cfg.Timeout+time.Second)
	defer cancel()
	var last *dns.Msg
	errs := []error{errAllFailed}
	for _, u := range r.order() {
		start := time.Now()
		m, err := r.exchangeWith(ctx, q, u)
		if r.opts.ObserveUpstream != nil {
			r.opts.ObserveUpstream(u.addr, time.Since(start), upstreamResult(m, err))
		}
		if ctx.Err() == nil || err == nil {
			u.state(r.log, m, err, r.now())
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", u.addr, err))
			if ctx.Err() != nil {
				break // stopping
			}
			continue
		}
		switch m.Rcode {
		case dns.RcodeServerFailure, dns.RcodeRefused, dns.RcodeNotImplemented, dns.RcodeFormatError:
			last = m
			continue
		}
		return m, nil
	}
	if last != nil {
		return last, nil
	}
	return nil, errors.Join(errs...)
}

// exchangeWith asks one upstream over UDP, and again over TCP if the
// answer is truncated. The answer must be to the question asked.
func (r *Responder) exchangeWith(ctx context.Context, q *dns.Msg, u *upstream) (*dns.Msg, error) {
	q = q.Copy()
	q.Id = dns.Id()
	c := &dns.Client{Net: "udp", Timeout: r.cfg.Timeout}
	m, err := exchangeOnce(ctx, c, q, u.addr)
	if err == nil && m.Truncated {
		c.Net = "tcp"
		m, err = exchangeOnce(ctx, c, q, u.addr)
	}
	if err != nil {
		return nil, err
	}
	if len(m.Question) != 1 || !strings.EqualFold(m.Question[0].Name, q.Question[0].Name) ||
		m.Question[0].Qtype != q.Question[0].Qtype || m.Question[0].Qclass != q.Question[0].Qclass {
		return nil, errors.New("the answer is to another question")
	}
	if !m.Response {
		return nil, errors.New("not an answer")
	}
	return m, nil
}

// exchangeOnce asks addr q over c's network, on a socket closed as soon
// as ctx is done (the library's read waits for its deadline only), so that
// Close frees every upstream socket at once.
func exchangeOnce(ctx context.Context, c *dns.Client, q *dns.Msg, addr string) (*dns.Msg, error) {
	co, err := c.DialContext(ctx, addr)
	if err != nil {
		return nil, err
	}
	defer co.Close()
	stop := context.AfterFunc(ctx, func() { co.Close() })
	defer stop()
	m, _, err := c.ExchangeWithConnContext(ctx, q, co)
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("%w (%w)", ctx.Err(), err)
	}
	return m, err
}

// upstreamResult names how an upstream query ended, for the histogram's
// result label: the RCODE in lower case (noerror, servfail, refused...),
// timeout, or failed (no usable answer).
func upstreamResult(m *dns.Msg, err error) string {
	var ne net.Error
	switch {
	case err == nil:
		if s, ok := dns.RcodeToString[m.Rcode]; ok {
			return strings.ToLower(s)
		}
		return "other"
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	}
	return "failed"
}

// order returns the upstreams in the order to ask them now: those not
// backed off in their configured order, then those backed off, in theirs.
func (r *Responder) order() []*upstream {
	now := r.now().UnixNano()
	out := make([]*upstream, 0, len(r.up))
	for _, u := range r.up {
		if u.downUntil.Load() <= now {
			out = append(out, u)
		}
	}
	for _, u := range r.up {
		if u.downUntil.Load() > now {
			out = append(out, u)
		}
	}
	return out
}

// upstream is one upstream resolver: until when it is backed off, and when
// its failure was last logged.
type upstream struct {
	addr      string
	downUntil atomic.Int64 // unix nanoseconds of the Responder's clock
	warned    atomic.Int64 // unix nanoseconds; 0: not failing
}

// state records how u answered at now: no answer, SERVFAIL or REFUSED
// back it off for backoff, with a warning at most once a backoff; an
// answer makes it healthy again (logged if it was not).
func (u *upstream) state(log *slog.Logger, m *dns.Msg, err error, now time.Time) {
	why := ""
	switch {
	case err != nil:
		why = err.Error()
	case m.Rcode == dns.RcodeServerFailure || m.Rcode == dns.RcodeRefused:
		why = "answered " + dns.RcodeToString[m.Rcode]
	}
	if why == "" {
		u.downUntil.Store(0)
		if u.warned.Swap(0) != 0 {
			log.Info("dns64: upstream answering again", "upstream", u.addr)
		}
		return
	}
	n := now.UnixNano()
	u.downUntil.Store(n + int64(backoff))
	if last := u.warned.Load(); (last == 0 || n-last >= int64(backoff)) && u.warned.CompareAndSwap(last, n) {
		log.Warn("dns64: upstream failing, asking the others first for a while", "upstream", u.addr, "error", why, "backoff", backoff.String())
	}
}
