package relay

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"
)

// Rate limits of the refusal log lines (see logLimiter).
const (
	// logEvery is the window over which refusal lines are counted.
	logEvery = 10 * time.Second
	// logBurst is how many refusal lines one (reason, client /64) may log
	// in full per window.
	logBurst = 8
	// logMaxKeys bounds the (reason, client /64) pairs tracked per window;
	// refusals of the others are summarised together, by reason.
	logMaxKeys = 128
)

// clock is time as the log limiter sees it; tests inject their own.
type clock interface {
	Now() time.Time
	// AfterFunc calls f in its own goroutine after d; stop cancels it.
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) AfterFunc(d time.Duration, f func()) func() bool { return time.AfterFunc(d, f).Stop }

// logLimiter keeps refusal log lines from flooding the log while the
// counters stay exact. Within a window of logEvery, the first logBurst
// refusals of each (reason, client /64) are logged in full and the others
// counted; when the window ends one summary line per pair says how many
// more there were ("flow refused: 1234 more refused from 2001:db8:1::/64 in
// the last 10s reason=denied"). At most logMaxKeys pairs are tracked per
// window: refusals of further pairs are not logged but summarised by reason
// alone, so that a flood from random /64s costs bounded memory and at most
// logMaxKeys×(logBurst+1) lines per window. One timer per window, none per
// pair; no window is open while nothing is refused.
type logLimiter struct {
	log   *slog.Logger
	clock clock

	mu     sync.Mutex
	open   bool      // a window is open
	start  time.Time // when the window opened
	gen    uint64    // the window's number, so that a stale timer does nothing
	stop   func() bool
	keys   map[logKey]*logCount
	others map[string]*logCount // untracked pairs, by reason
}

type logKey struct {
	reason string
	client netip.Prefix
}

type logCount struct {
	logged, suppressed int
	level              slog.Level
}

// summary is one line a window's end logs.
type summary struct {
	key     logKey
	tracked bool
	n       int
	level   slog.Level
	window  time.Duration
}

func newLogLimiter(log *slog.Logger, c clock) *logLimiter {
	return &logLimiter{log: log, clock: c}
}

// allow reports whether a refusal line for reason and client may be logged
// in full; if not, it is counted for the window's summary.
func (l *logLimiter) allow(reason string, client netip.Prefix, level slog.Level) bool {
	l.mu.Lock()
	now := l.clock.Now()
	var late []summary
	if l.open && now.Sub(l.start) >= logEvery {
		late = l.endLocked(now) // the timer has not run yet
	}
	if !l.open {
		l.open, l.start = true, now
		l.gen++
		gen := l.gen
		l.stop = l.clock.AfterFunc(logEvery, func() { l.windowEnd(gen) })
		l.keys = make(map[logKey]*logCount)
		l.others = make(map[string]*logCount)
	}
	ok := l.countLocked(logKey{reason, client}, level)
	l.mu.Unlock()
	l.emit(late)
	return ok
}

func (l *logLimiter) countLocked(k logKey, level slog.Level) bool {
	c := l.keys[k]
	if c == nil {
		if len(l.keys) >= logMaxKeys {
			o := l.others[k.reason]
			if o == nil {
				o = &logCount{}
				l.others[k.reason] = o
			}
			o.suppressed++
			o.level = max(o.level, level)
			return false
		}
		c = &logCount{level: level}
		l.keys[k] = c
	}
	if c.logged < logBurst {
		c.logged++
		return true
	}
	c.suppressed++
	c.level = max(c.level, level)
	return false
}

// windowEnd is the window timer's callback.
func (l *logLimiter) windowEnd(gen uint64) {
	l.mu.Lock()
	var s []summary
	if l.open && l.gen == gen {
		s = l.endLocked(l.clock.Now())
	}
	l.mu.Unlock()
	l.emit(s)
}

// flush ends the window now, logging its summaries (when the relay stops).
func (l *logLimiter) flush() {
	l.mu.Lock()
	var s []summary
	if l.open {
		s = l.endLocked(l.clock.Now())
	}
	l.mu.Unlock()
	l.emit(s)
}

// endLocked closes the window and returns its summaries.
func (l *logLimiter) endLocked(now time.Time) []summary {
	window := now.Sub(l.start).Round(time.Second)
	var s []summary
	for k, c := range l.keys {
		if c.suppressed > 0 {
			s = append(s, summary{key: k, tracked: true, n: c.suppressed, level: c.level, window: window})
		}
	}
	for reason, c := range l.others {
		s = append(s, summary{key: logKey{reason: reason}, n: c.suppressed, level: c.level, window: window})
	}
	l.open = false
	l.keys, l.others = nil, nil // released: a flood's keys do not stay
	if l.stop != nil {
		l.stop()
		l.stop = nil
	}
	return s
}

// emit logs summaries; it is called without the lock held.
func (l *logLimiter) emit(s []summary) {
	for _, x := range s {
		if x.tracked {
			l.log.Log(context.Background(), x.level,
				fmt.Sprintf("flow refused: %d more refused from %s in the last %s", x.n, x.key.client, x.window),
				"reason", x.key.reason, "client_net", x.key.client.String(), "suppressed", x.n)
			continue
		}
		l.log.Log(context.Background(), x.level,
			fmt.Sprintf("flow refused: %d more refused from clients beyond the %d tracked in the last %s", x.n, logMaxKeys, x.window),
			"reason", x.key.reason, "suppressed", x.n)
	}
}
