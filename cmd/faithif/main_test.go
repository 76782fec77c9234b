package main

import (
	"bytes"
	"strings"
	"testing"
)

func runCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestUsageErrors(t *testing.T) {
	t.Setenv("FAITHIF_RUN_DIR", t.TempDir())
	tests := []struct {
		args []string
		want string
	}{
		{nil, "usage: faithif"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"create"}, "missing interface name"},
		{[]string{"create", "eth0", "-f"}, "must be faith<N>"},
		{[]string{"create", "faith", "-f"}, "must be faith<N>"},
		{[]string{"create", "faithX", "-f"}, "must be faith<N>"},
		{[]string{"create", "faith0", "--prefix", "nonsense", "-f"}, "not an IPv6 prefix"},
		{[]string{"create", "faith0", "--prefix", "192.0.2.0/24", "-f"}, "not an IPv6 prefix"},
		{[]string{"create", "faith0", "--prefix", "2001:db8::/97", "-f"}, "longer than /96"},
		{[]string{"create", "faith0", "--prefix", "2001:db8:46::1/96", "-f"}, "host bits are set"},
		{[]string{"create", "faith0", "--prefix", "2001:db8::/32", "--prefix", "2001:db8:46::/96", "-f"}, "overlaps"},
		{[]string{"create", "faith0", "--mtu", "100", "-f"}, "mtu 100"},
		{[]string{"create", "faith0", "--log-format", "xml", "-f"}, "--log-format"},
		{[]string{"create", "faith0", "--log-level", "loud", "-f"}, "--log-level"},
		{[]string{"create", "faith0", "--dial-timeout", "0s", "-f"}, "--dial-timeout"},
		{[]string{"create", "faith0", "--idle-timeout", "-1s", "-f"}, "--idle-timeout"},
		{[]string{"create", "faith0", "--bogus"}, "flag provided but not defined"},
		{[]string{"create", "faith0", "extra", "-f"}, `unexpected argument "extra"`},
		{[]string{"destroy"}, "missing interface name"},
		{[]string{"destroy", "eth0"}, "must be faith<N>"},
		{[]string{"show", "lo"}, "must be faith<N>"},
		{[]string{"sysctl"}, "want exactly one argument"},
		{[]string{"sysctl", "net.inet.ip.forwarding"}, "unknown oid"},
		{[]string{"sysctl", "net.inet6.ip6.keepfaith=2"}, "value must be 0 or 1"},
	}
	for _, tt := range tests {
		code, _, stderr := runCmd(t, tt.args...)
		if code != exitUsage || !strings.Contains(stderr, tt.want) {
			t.Errorf("faithif %s: exit %d, stderr %q; want exit 2 and %q", strings.Join(tt.args, " "), code, stderr, tt.want)
		}
	}
}

func TestRuntimeErrors(t *testing.T) {
	t.Setenv("FAITHIF_RUN_DIR", t.TempDir())
	for _, args := range [][]string{{"destroy", "faith7"}, {"show", "faith7"}} {
		code, _, stderr := runCmd(t, args...)
		if code != exitError || !strings.Contains(stderr, "not running") {
			t.Errorf("faithif %s: exit %d, stderr %q; want exit 1 and 'not running'", strings.Join(args, " "), code, stderr)
		}
	}
}

func TestSysctlReadSetPersist(t *testing.T) {
	t.Setenv("FAITHIF_RUN_DIR", t.TempDir())
	steps := []struct {
		args []string
		want string
	}{
		{[]string{"sysctl", "net.inet6.ip6.keepfaith"}, "net.inet6.ip6.keepfaith: 0\n"},
		{[]string{"sysctl", "net.inet6.ip6.keepfaith=1"}, "net.inet6.ip6.keepfaith: 0 -> 1\n"},
		{[]string{"sysctl", "net.inet6.ip6.keepfaith"}, "net.inet6.ip6.keepfaith: 1\n"},
		{[]string{"sysctl", "-w", "net.inet6.ip6.keepfaith=0"}, "net.inet6.ip6.keepfaith: 1 -> 0\n"},
		{[]string{"show"}, "no faith interfaces are running\n"},
		{[]string{"list", "--json"}, "[]\n"},
	}
	for _, s := range steps {
		code, stdout, stderr := runCmd(t, s.args...)
		if code != exitOK || stdout != s.want {
			t.Errorf("faithif %s: exit %d, stdout %q, stderr %q; want %q", strings.Join(s.args, " "), code, stdout, stderr, s.want)
		}
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"create", "--help"}, {"sysctl", "-h"}, {"show", "--help"}, {"destroy", "--help"}} {
		code, stdout, stderr := runCmd(t, args...)
		if code != exitOK || !strings.Contains(stdout+stderr, "usage: faithif") {
			t.Errorf("faithif %s: exit %d; want 0 and usage text", strings.Join(args, " "), code)
		}
	}
}
