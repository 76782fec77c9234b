package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestRoundDurations(t *testing.T) {
	var b bytes.Buffer
	log := newLogger(&b, "text", "info")
	log.Info("x", "dial_seconds", 0.000309137, "duration_seconds", 12.3456789, "age_seconds", 2.0,
		"grace", 10*time.Second, "took", 1234567891*time.Nanosecond, "quick", 1234567*time.Nanosecond, "ratio", 0.123456789)
	line := b.String()
	for _, want := range []string{"dial_seconds=0.000309 ", "duration_seconds=12.346 ", "age_seconds=2 ", "grace=10s ",
		"took=1.235s ", "quick=1.235ms ", "ratio=0.123456789"} {
		if !strings.Contains(line, want) {
			t.Errorf("text log line %q lacks %q", line, want)
		}
	}
	b.Reset()
	log = newLogger(&b, "json", "info")
	log.Info("x", "dial_seconds", 0.000309137, "prefixes", []string{"2001:db8:46::/96", "64:ff9b::/96"})
	if line := b.String(); !strings.Contains(line, `"dial_seconds":0.000309137`) || !strings.Contains(line, `"prefixes":["2001:db8:46::/96","64:ff9b::/96"]`) {
		t.Errorf("JSON log line %q: want every digit and lists as arrays", line)
	}
}
