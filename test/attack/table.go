package main

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// result is one row of the table.
type result struct {
	row    int
	attack string
	// sent says what the attacker sent or did, with the achieved rate.
	sent string
	// legit is what the legitimate workload saw during the attack; nil if
	// there was none. legitText, if set, replaces its summary.
	legit     *legitSummary
	legitText string
	// before, peak (during) and after are faithif's process figures.
	before, peak, after proc
	// verdict is whether the row's expected behaviour held; figure the
	// figure that decided it.
	held   bool
	figure string
	notes  []string
	// err is why the row could not run or finish (then held is moot).
	err     error
	skipped string
	elapsed time.Duration
}

// note adds a line to the row's notes.
func (r *result) note(format string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

// verdict sets held and the deciding figure.
func (r *result) verdict(held bool, format string, args ...any) {
	r.held, r.figure = held, fmt.Sprintf(format, args...)
}

func (r *result) status() string {
	switch {
	case r.skipped != "":
		return "skipped"
	case r.err != nil:
		return "ERROR"
	case r.figure == "":
		return "ERROR"
	case r.held:
		return "yes"
	}
	return "**NO**"
}

func mib(b float64) string { return fmt.Sprintf("%.0f", b/(1<<20)) }

func triple(a, b, c proc, f func(proc) string) string {
	s := func(p proc) string {
		if !p.ok {
			return "—"
		}
		return f(p)
	}
	return s(a) + " → " + s(b) + " → " + s(c)
}

func ms(d time.Duration) string {
	switch {
	case d == 0:
		return "0"
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	case d < 10*time.Second:
		return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.1f s", d.Seconds())
}

// printTable writes the results as a Markdown table, then each row's
// notes and errors.
func printTable(w io.Writer, rs []*result) {
	fmt.Fprintln(w, "| # | attack | sent | legit ok | connect p50 / max | RSS MiB before → peak → after | goroutines | fds | held | deciding figure |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range rs {
		legit, lat := "—", "—"
		switch {
		case r.legitText != "":
			legit = r.legitText
		case r.legit != nil && r.legit.attempts > 0:
			legit = fmt.Sprintf("%d/%d", r.legit.ok, r.legit.attempts)
		}
		if r.legit != nil && r.legit.attempts > 0 {
			lat = ms(r.legit.p50) + " / " + ms(r.legit.max)
		}
		fmt.Fprintf(w, "| %d | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", r.row, r.attack, dash(r.sent), legit, lat,
			triple(r.before, r.peak, r.after, func(p proc) string { return mib(p.rss) }),
			triple(r.before, r.peak, r.after, func(p proc) string { return fmt.Sprintf("%.0f", p.goroutines) }),
			triple(r.before, r.peak, r.after, func(p proc) string { return fmt.Sprintf("%.0f", p.fds) }),
			r.status(), dash(cell(r)))
	}
	fmt.Fprintln(w)
	for _, r := range rs {
		var lines []string
		if r.skipped != "" {
			lines = append(lines, "skipped: "+r.skipped)
		}
		if r.err != nil {
			lines = append(lines, "error: "+r.err.Error())
		}
		if r.legit != nil && r.legit.firstErr != "" {
			lines = append(lines, fmt.Sprintf("legitimate clients: %d failed, %d slower than the bound; first failure: %s", r.legit.failed, r.legit.slow, r.legit.firstErr))
		}
		if r.legit != nil && r.legit.maxRetrans > 0 {
			lines = append(lines, fmt.Sprintf("legitimate clients: at most %d SYN retransmission(s) on one connect", r.legit.maxRetrans))
		}
		lines = append(lines, r.notes...)
		if len(lines) == 0 {
			continue
		}
		fmt.Fprintf(w, "Row %d (%s, %v):\n", r.row, r.attack, r.elapsed.Round(time.Second))
		for _, l := range lines {
			fmt.Fprintf(w, "  - %s\n", strings.TrimSpace(l))
		}
	}
}

func cell(r *result) string {
	if r.figure == "" && r.err != nil {
		return "could not run: see below"
	}
	return r.figure
}

func dash(s string) string {
	if s == "" {
		return "—"
	}
	return strings.ReplaceAll(s, "|", "/")
}
