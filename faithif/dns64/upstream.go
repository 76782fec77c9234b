package dns64

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// ednsSize is the UDP payload size faithif advertises, upstream and to its
// clients, and the largest answer it sends a client over UDP: 1232 bytes
// fit any path's MTU without fragments (DNS flag day 2020).
const ednsSize = 1232

// errAllFailed means no upstream answered.
var errAllFailed = errors.New("no upstream answered")

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

// exchange asks the upstreams k, in order, until one answers with
// something other than SERVFAIL, REFUSED, NOTIMP or FORMERR; if all answer
// so, the last such answer is returned, and if none answers at all,
// errAllFailed.
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
	for _, u := range r.up {
		start := time.Now()
		m, err := r.exchangeWith(ctx, q, u)
		if r.opts.ObserveUpstream != nil {
			r.opts.ObserveUpstream(u.addr, time.Since(start), err == nil)
		}
		u.state(r.log, err)
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
	m, _, err := c.ExchangeContext(ctx, q, u.addr)
	if err == nil && m.Truncated {
		c.Net = "tcp"
		m, _, err = c.ExchangeContext(ctx, q, u.addr)
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

// upstream is one upstream resolver and whether it last failed, so that a
// change is logged once.
type upstream struct {
	addr    string
	failing atomic.Bool
}

// state logs when u starts failing or answers again.
func (u *upstream) state(log *slog.Logger, err error) {
	if err != nil {
		if !u.failing.Swap(true) {
			log.Warn("dns64: upstream not answering, trying the next one", "upstream", u.addr, "error", err.Error())
		}
		return
	}
	if u.failing.Swap(false) {
		log.Info("dns64: upstream answering again", "upstream", u.addr)
	}
}
