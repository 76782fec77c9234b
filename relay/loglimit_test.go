package relay

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/faithif/faithif/relay/flow"
)

// fakeClock is a clock the test moves by hand; AfterFunc's functions run
// in Advance, on the test's goroutine.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	at      time.Time
	f       func()
	stopped bool
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		was := !t.stopped
		t.stopped = true
		return was
	}
}

// Advance moves the clock by d and runs the timers that are due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var due []*fakeTimer
	rest := c.timers[:0]
	for _, t := range c.timers {
		switch {
		case t.stopped:
		case !t.at.After(c.now):
			t.stopped = true
			due = append(due, t)
		default:
			rest = append(rest, t)
		}
	}
	c.timers = rest
	c.mu.Unlock()
	for _, t := range due {
		t.f()
	}
}

// pending returns how many timers are armed.
func (c *fakeClock) pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, t := range c.timers {
		if !t.stopped {
			n++
		}
	}
	return n
}

// syncBuffer is a bytes.Buffer safe for a logger and a test at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// lines returns the lines written so far but the debug lines of a SYN's
// steps (isStepLine), and forgets them all.
func (s *syncBuffer) lines() []string {
	var out []string
	for _, l := range s.allLines() {
		if !isStepLine(l) {
			out = append(out, l)
		}
	}
	return out
}

// allLines returns the lines written so far, and forgets them.
func (s *syncBuffer) allLines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := strings.TrimSpace(s.b.String())
	s.b.Reset()
	if t == "" {
		return nil
	}
	return strings.Split(t, "\n")
}

// stepMessages are the debug lines that follow each SYN through the relay
// (TestDebugSteps).
var stepMessages = []string{"flow captured", "flow mapped", "flow not mapped", "flow rule", "dial started", "dial finished"}

// isStepLine reports whether a text log line is one of stepMessages.
func isStepLine(l string) bool {
	for _, m := range stepMessages {
		if strings.Contains(l, "level=DEBUG msg=\""+m+"\"") {
			return true
		}
	}
	return false
}

func textLogger(w *syncBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{
		Level: slog.LevelDebug,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
}

func TestLogLimiter(t *testing.T) {
	var out syncBuffer
	clk := newFakeClock()
	l := newLogLimiter(textLogger(&out), clk)
	client := netip.MustParsePrefix("2001:db8:1::/64")
	other := netip.MustParsePrefix("2001:db8:2::/64")

	// A flood from one /64: logBurst lines in full, then counted.
	allowed := 0
	for range 1234 + logBurst {
		if l.allow("denied", client, slog.LevelInfo) {
			allowed++
		}
	}
	if allowed != logBurst {
		t.Fatalf("%d lines allowed of a flood from one /64; want %d", allowed, logBurst)
	}
	// Another reason and another /64 are counted apart.
	if !l.allow("limit", client, slog.LevelWarn) || !l.allow("denied", other, slog.LevelInfo) {
		t.Fatal("another reason or another /64 was held back")
	}
	if lines := out.lines(); len(lines) != 0 {
		t.Fatalf("summary before the window ended: %q", lines)
	}
	if n := clk.pending(); n != 1 {
		t.Fatalf("%d timers armed; want one for the window", n)
	}
	clk.Advance(logEvery - time.Millisecond)
	if lines := out.lines(); len(lines) != 0 {
		t.Fatalf("summary before the window ended: %q", lines)
	}
	clk.Advance(time.Millisecond)
	lines := out.lines()
	want := `level=INFO msg="flow refused: 1234 more refused from 2001:db8:1::/64 in the last 10s" reason=denied client_net=2001:db8:1::/64 suppressed=1234`
	if len(lines) != 1 || lines[0] != want {
		t.Fatalf("window end logged %q; want [%s]", lines, want)
	}
	if n := clk.pending(); n != 0 {
		t.Fatalf("%d timers armed while nothing is refused", n)
	}

	// The next window starts afresh.
	if !l.allow("denied", client, slog.LevelInfo) {
		t.Fatal("a new window holds back the first line")
	}
	clk.Advance(logEvery)
	if lines := out.lines(); len(lines) != 0 {
		t.Fatalf("a window with nothing held back logged %q", lines)
	}
}

// TestLogLimiterRandomClients: a flood from random /64s tracks at most
// logMaxKeys of them; the rest are summarised by reason, and the limiter's
// memory goes with the window.
func TestLogLimiterRandomClients(t *testing.T) {
	var out syncBuffer
	clk := newFakeClock()
	l := newLogLimiter(textLogger(&out), clk)
	const n = 100_000
	allowed := 0
	for i := range n {
		p := netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 4: byte(i >> 16), 5: byte(i >> 8), 6: byte(i)}), 64)
		if l.allow("denied", p, slog.LevelInfo) {
			allowed++
		}
	}
	if allowed != logMaxKeys {
		t.Fatalf("%d lines allowed from %d /64s; want %d (one per tracked /64)", allowed, n, logMaxKeys)
	}
	if len(l.keys) != logMaxKeys {
		t.Fatalf("%d keys tracked; want at most %d", len(l.keys), logMaxKeys)
	}
	clk.Advance(logEvery)
	lines := out.lines()
	want := fmt.Sprintf(`level=INFO msg="flow refused: %d more refused from clients beyond the %d tracked in the last 10s" reason=denied suppressed=%d`, n-logMaxKeys, logMaxKeys, n-logMaxKeys)
	if len(lines) != 1 || lines[0] != want {
		t.Fatalf("window end logged %q; want [%s]", lines, want)
	}
	if l.keys != nil || l.others != nil {
		t.Fatal("the window's keys are kept after it ended")
	}
}

// TestLogLimiterLateTimer: a refusal after the window's end, before its
// timer ran, ends the window itself; the stale timer then does nothing.
func TestLogLimiterLateTimer(t *testing.T) {
	var out syncBuffer
	clk := newFakeClock()
	l := newLogLimiter(textLogger(&out), clk)
	client := netip.MustParsePrefix("2001:db8:1::/64")
	for range logBurst + 2 {
		l.allow("timeout", client, slog.LevelInfo)
	}
	clk.mu.Lock()
	clk.now = clk.now.Add(logEvery + time.Second) // the timer is late
	clk.mu.Unlock()
	if !l.allow("timeout", client, slog.LevelInfo) {
		t.Fatal("the first line of a new window was held back")
	}
	if lines := out.lines(); len(lines) != 1 || !strings.Contains(lines[0], "2 more refused from 2001:db8:1::/64 in the last 11s") {
		t.Fatalf("late window end logged %q", lines)
	}
	l.flush()
	if lines := out.lines(); len(lines) != 0 {
		t.Fatalf("flush with nothing held back logged %q", lines)
	}
	clk.Advance(time.Hour)
	if lines := out.lines(); len(lines) != 0 {
		t.Fatalf("a stale timer logged %q", lines)
	}
}

// TestRelayRefusalLogsLimited: the relay's refusal lines are limited, its
// counters are not.
func TestRelayRefusalLogsLimited(t *testing.T) {
	var out syncBuffer
	m, _ := NewMapper(netip.MustParsePrefix("2001:db8:46::/96"))
	rules, _ := ParseRules("deny.conf", strings.NewReader("::/0 deny 0.0.0.0/0\n"), nil)
	clk := newFakeClock()
	r := New(Config{Mapper: m, Rules: rules, Logger: textLogger(&out)})
	r.logs = newLogLimiter(r.cfg.Logger, clk)
	const n = 500
	for i := range n {
		req := &fakeRequest{
			client: netip.AddrPortFrom(netip.MustParseAddr("2001:db8:1::2"), uint16(1000+i)),
			dest:   netip.MustParseAddrPort("[2001:db8:46::c000:202]:80"),
		}
		r.Handle(req)
		if req.refused != 1 || req.how != flow.RefuseReset {
			t.Fatalf("flow %d: refused %d times with %s", i, req.refused, req.how)
		}
	}
	if c := r.Counters(); c.FlowsDenied != n {
		t.Fatalf("flows_denied %d; want %d", c.FlowsDenied, n)
	}
	if lines := out.lines(); len(lines) != logBurst {
		t.Fatalf("%d lines logged; want %d:\n%s", len(lines), logBurst, strings.Join(lines, "\n"))
	}
	clk.Advance(logEvery)
	if lines := out.lines(); len(lines) != 1 || !strings.Contains(lines[0], fmt.Sprintf("flow refused: %d more refused from 2001:db8:1::/64 in the last 10s", n-logBurst)) {
		t.Fatalf("summary: %q", lines)
	}
}
