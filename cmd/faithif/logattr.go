package main

import (
	"log/slog"
	"strconv"
	"strings"
	"time"
)

// roundDurations is the text log handler's ReplaceAttr: durations for a
// reader. A time.Duration is rounded to the microsecond below a second and
// to the millisecond above; a number of seconds (a key ending in _seconds)
// is printed the same way, with trailing zeros dropped (dial_seconds=0.000309,
// duration_seconds=12.346). JSON logs keep every digit, for machines.
func roundDurations(_ []string, a slog.Attr) slog.Attr {
	switch v := a.Value; v.Kind() {
	case slog.KindDuration:
		d := v.Duration()
		if d >= time.Second || d <= -time.Second {
			d = d.Round(time.Millisecond)
		} else {
			d = d.Round(time.Microsecond)
		}
		return slog.Duration(a.Key, d)
	case slog.KindFloat64:
		if !strings.HasSuffix(a.Key, "_seconds") {
			return a
		}
		f := v.Float64()
		prec := 6
		if f >= 1 || f <= -1 {
			prec = 3
		}
		s := strconv.FormatFloat(f, 'f', prec, 64)
		if strings.Contains(s, ".") {
			s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
		}
		return slog.String(a.Key, s)
	}
	return a
}
