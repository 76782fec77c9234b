package main

import (
	"flag"
	"io"
	"slices"
	"strings"
	"testing"
)

// TestDNS64FlagErrors: create's DNS64 flags are usage errors (exit 2),
// each naming its flag, every one at once, before anything is created.
func TestDNS64FlagErrors(t *testing.T) {
	t.Setenv("FAITHIF_RUN_DIR", t.TempDir())
	for _, tt := range []struct {
		args []string
		want []string
	}{
		{[]string{"--dns64-upstream", "192.0.2.53"}, []string{"faithif: --dns64: missing: the addresses to answer on, e.g. --dns64 [2001:db8:1::1]:53"}},
		{[]string{"--dns64", "[2001:db8:1::1]:53"}, []string{"faithif: --dns64-upstream: missing"}},
		{[]string{"--dns64", "[2001:db8:1::1]:0,ns.example", "--dns64-upstream", "192.0.2.53,192.0.2.53", "--dns64-rate-limit", "-1", "--dns64-timeout", "1h", "--dns64-allow", "2001:db8::1/64", "--dns64-prefix", "2001:db8:47::/96"},
			[]string{`faithif: --dns64: "[2001:db8:1::1]:0": port "0"`, `faithif: --dns64: "ns.example"`, "faithif: --dns64-upstream: 192.0.2.53:53 is listed twice",
				"faithif: --dns64-rate-limit: -1", "faithif: --dns64-timeout: 1h0m0s", "faithif: --dns64-allow: 2001:db8::1/64 has host bits set",
				"faithif: --dns64-prefix: 2001:db8:47::/96 is not one of the interface's prefixes"}},
		{[]string{"--dns64", "[2001:db8:1::1]:53", "--dns64-upstream", "[2001:db8:46::53]"}, []string{"faithif: --dns64-upstream: [2001:db8:46::53]:53 is inside the FAITH prefix"}},
	} {
		args := append([]string{"create", "faith0", "--prefix", "2001:db8:46::/96", "-f"}, tt.args...)
		code, _, stderr := runCmd(t, args...)
		for _, w := range tt.want {
			if code != exitUsage || !strings.Contains(stderr, w) {
				t.Errorf("faithif %s: exit %d, stderr %q; want exit 2 and %q", strings.Join(args, " "), code, stderr, w)
			}
		}
	}
}

// TestDNS64FlagSettings: no DNS64 flag, no [interface.dns64]; lists split
// at commas and add up when repeated; --dns64-allow given (even empty)
// replaces the default, left out keeps it.
func TestDNS64FlagSettings(t *testing.T) {
	parse := func(args ...string) *dns64Flags {
		fs := flag.NewFlagSet("create", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		fs.Bool("f", false, "")
		d := addDNS64Flags(fs)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		return d
	}
	if s := parse("-f").settings(); s != nil {
		t.Errorf("no DNS64 flag: %+v", s)
	}
	s := parse("--dns64", "[2001:db8:1::1]:53, 192.0.2.1", "--dns64", "[2001:db8:1::1]:5353", "--dns64-upstream", "192.0.2.53", "--dns64-synthall").settings()
	if s == nil || !slices.Equal(s.Listen, []string{"[2001:db8:1::1]:53", "192.0.2.1", "[2001:db8:1::1]:5353"}) || !s.SynthAll ||
		s.Allow != nil || s.RateLimit != nil || s.CacheSize != nil || s.Timeout != nil {
		t.Errorf("settings %+v", s)
	}
	s = parse("--dns64-allow", "", "--dns64-rate-limit", "0", "--dns64-cache-size", "7", "--dns64-timeout", "1s").settings()
	if s == nil || s.Allow == nil || *s.RateLimit != 0 || *s.CacheSize != 7 || *s.Timeout != "1s" {
		t.Errorf("settings %+v", s)
	}
}
