package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
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
		{[]string{"create", "faith0", "--config", "faithd.conf", "-f"}, "create: flag provided but not defined: -config (the access file is --access FILE; --config names faithif.conf, for 'faithif run')"},
		{[]string{"rules", "test", "--config", "faithd.conf", "2001:db8:1::2", "[64:ff9b::1]:80"}, "the access file is --access FILE"},
		{[]string{"reload", "faith0", "--config", "faithd.conf"}, "the access file is --access FILE"},
		{[]string{"create", "faith0", "extra", "-f"}, `unexpected argument "extra"`},
		{[]string{"create", "--mtu", "1400", "faith0", "extra", "-f"}, `unexpected argument "extra"`},
		{[]string{"rules", "test", "faith0", "--access", "f.conf", "2001:db8:1::2", "[64:ff9b::1]:80"}, "faith0 decides with its own prefixes and access file: give faith0, or --access and --prefix, not both"},
		{[]string{"create", "--prefix", "2001:db8::/97", "faith0", "--mtu", "1400", "-f"}, "longer than /96"},
		{[]string{"destroy"}, "missing interface name"},
		{[]string{"destroy", "eth0"}, "must be faith<N>"},
		{[]string{"show", "lo"}, "must be faith<N>"},
		{[]string{"sysctl"}, "want exactly one argument"},
		{[]string{"sysctl", "net.inet.ip.forwarding"}, "unknown oid"},
		{[]string{"sysctl", "net.inet6.ip6.keepfaith=2"}, "value must be 0 or 1"},
		{[]string{"create", "faith0", "--metrics", "9464", "-f"}, "--metrics"},
		{[]string{"create", "faith0", "--ftp-ports", "21,ftp", "-f"}, `faithif: --ftp-ports: "ftp" is not a port number`},
		{[]string{"create", "faith0", "--ftp-ports", "0", "-f"}, "faithif: --ftp-ports: port 0: must be between 1 and 65535"},
		{[]string{"run"}, "--config FILE is required"},
		{[]string{"run", "--config", "x.conf", "extra"}, `unexpected argument "extra"`},
		{[]string{"run", "--config", "x.conf", "--metrics", "localhost"}, "--metrics"},
		{[]string{"run", "--bogus"}, "flag provided but not defined"},
		{[]string{"flows", "lo"}, "must be faith<N>"},
		{[]string{"flows", "--client", "192.0.2.1"}, "--client 192.0.2.1: clients are IPv6"},
		{[]string{"flows", "faith0", "--client", "2001:db8:1::2/64"}, "--client 2001:db8:1::2/64: host bits are set (did you mean 2001:db8:1::/64?)"},
		{[]string{"flows", "--dest", "192.0.2.300"}, "--dest 192.0.2.300: not an IP address or prefix"},
		{[]string{"flows", "--dest", "192.0.2.2:0"}, `--dest 192.0.2.2:0: port "0": want a number from 1 to 65535`},
		{[]string{"flows", "faith0", "faith1"}, `unexpected argument "faith1"`},
		{[]string{"flows", "--client", "2001:db8:1::/64", "--client", "2001:db8:2::/64"}, "given twice (2001:db8:1::/64 and 2001:db8:2::/64): give one"},
		{[]string{"completion"}, "want bash or zsh"},
		{[]string{"completion", "fish"}, `shell "fish": want bash or zsh`},
		{[]string{"man"}, "want faithif.8 or faithif.conf.5"},
		{[]string{"man", "faithd.8"}, `page "faithd.8"`},
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
	for _, args := range [][]string{{"destroy", "faith7"}, {"show", "faith7"}, {"flows", "faith7"}} {
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
		{[]string{"sysctl", "net.inet6.ip6.keepfaith=1"}, "net.inet6.ip6.keepfaith: 1 (unchanged)\n"},
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
	for _, args := range [][]string{{"help"}, {"create", "--help"}, {"sysctl", "-h"}, {"show", "--help"}, {"destroy", "--help"},
		{"completion", "--help"}, {"man", "--help"}} {
		code, stdout, stderr := runCmd(t, args...)
		if code != exitOK || !strings.Contains(stdout+stderr, "usage: faithif") {
			t.Errorf("faithif %s: exit %d; want 0 and usage text", strings.Join(args, " "), code)
		}
	}
}

// TestRunConfigErrors: a bad configuration is exit status 1 with every
// error as FILE:LINE: KEY, before anything is touched.
func TestRunConfigErrors(t *testing.T) {
	t.Setenv("FAITHIF_RUN_DIR", t.TempDir())
	path := filepath.Join(t.TempDir(), "faithif.conf")
	if err := os.WriteFile(path, []byte("log_level = \"loud\"\n[[interface]]\nname = \"faith0\"\nprefixes = [\"64:ff9b::/96\"]\nmtu = 9\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCmd(t, "run", "--config", path)
	for _, want := range []string{"faithif: " + path + ":1: log_level:", "faithif: " + path + ":5: interface.mtu:"} {
		if code != exitError || !strings.Contains(stderr, want) {
			t.Errorf("exit %d, stderr %q; want exit 1 and %q", code, stderr, want)
		}
	}
	code, _, stderr = runCmd(t, "run", "--config", filepath.Join(t.TempDir(), "missing.conf"))
	if code != exitError || !strings.Contains(stderr, "missing.conf") {
		t.Errorf("missing file: exit %d, stderr %q", code, stderr)
	}
}

// TestRunCheck: --check prints the plan of a good file and changes nothing.
func TestRunCheck(t *testing.T) {
	t.Setenv("FAITHIF_RUN_DIR", t.TempDir())
	path := filepath.Join(t.TempDir(), "faithif.conf")
	conf := "keepfaith = true\n[[interface]]\nname = \"faith4\"\nprefixes = [\"2001:db8:46::/96\"]\n[[interface.route]]\nprefix = \"2001:db8:46::/96\"\ntable = 100\n"
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runCmd(t, "run", "--config", path, "--check", "--metrics", "127.0.0.1:9464")
	for _, want := range []string{path + ": ok", "net.inet6.ip6.keepfaith=1", "faith4: prefixes [2001:db8:46::/96]", "route 2001:db8:46::/96 table 100 dev faith4", "metrics on 127.0.0.1:9464"} {
		if code != exitOK || !strings.Contains(stdout, want) {
			t.Errorf("exit %d, stdout %q, stderr %q; want %q", code, stdout, stderr, want)
		}
	}
	code, stdout, _ = runCmd(t, "sysctl", "net.inet6.ip6.keepfaith")
	if code != exitOK || !strings.Contains(stdout, ": 0") {
		t.Errorf("--check changed keepfaith: %q", stdout)
	}
}

// TestBadFlagOneLine: a bad flag is one short error naming the command and
// one hint, for every command; never the usage text, never twice.
func TestBadFlagOneLine(t *testing.T) {
	t.Setenv("FAITHIF_RUN_DIR", t.TempDir())
	for _, c := range commands() {
		args := []string{c.name}
		if c.sub != "" {
			args = append(args, c.sub)
		}
		args = append(args, "--frob")
		code, stdout, stderr := runCmd(t, args...)
		want := "faithif: " + c.name
		if c.sub != "" {
			want += " " + c.sub
		}
		want += ": flag provided but not defined: -frob\nRun 'faithif " + c.name + " --help' for usage.\n"
		if code != exitUsage || stderr != want || stdout != "" {
			t.Errorf("faithif %s: exit %d, stdout %q, stderr\n%q\nwant exit 2 and only\n%q", strings.Join(args, " "), code, stdout, stderr, want)
		}
	}
	code, _, stderr := runCmd(t, "--frob")
	if want := "faithif: unknown command \"--frob\"\nRun 'faithif help' for the commands.\n"; code != exitUsage || stderr != want {
		t.Errorf("faithif --frob: exit %d, stderr %q; want %q", code, stderr, want)
	}
}

// TestVersion: version, --version and -V print the build; --json is the
// same as JSON.
func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}, {"-V"}} {
		code, stdout, stderr := runCmd(t, args...)
		if code != exitOK || !strings.HasPrefix(stdout, "faithif ") || !strings.Contains(stdout, "(commit ") || !strings.Contains(stdout, "go1.") || stderr != "" {
			t.Errorf("faithif %s: exit %d, stdout %q, stderr %q; want 'faithif VERSION (commit C, goX)'", strings.Join(args, " "), code, stdout, stderr)
		}
	}
	code, stdout, _ := runCmd(t, "version", "--json")
	var v map[string]any
	if err := json.Unmarshal([]byte(stdout), &v); code != exitOK || err != nil || v["version"] == nil || v["commit"] == nil || v["go_version"] == nil {
		t.Errorf("version --json: exit %d, %q (%v); want version, commit, go_version", code, stdout, err)
	}
	if code, _, stderr := runCmd(t, "version", "extra"); code != exitUsage || !strings.Contains(stderr, `unexpected argument "extra"`) {
		t.Errorf("version extra: exit %d, %q", code, stderr)
	}
}

// TestHelpCommand: 'faithif help COMMAND' and 'COMMAND --help' show that
// command's own help (list its own, not show's).
func TestHelpCommand(t *testing.T) {
	for _, c := range commands() {
		for _, args := range [][]string{{"help", c.name}, append(append([]string{c.name}, strings.Fields(c.sub)...), "--help")} {
			code, stdout, stderr := runCmd(t, args...)
			if want := "usage: faithif " + c.name; code != exitOK || !strings.HasPrefix(stdout+stderr, want) {
				t.Errorf("faithif %s: exit %d, output %q; want exit 0 and %q first", strings.Join(args, " "), code, stdout+stderr, want)
			}
		}
	}
	if code, stdout, _ := runCmd(t, "help"); code != exitOK || !strings.Contains(stdout, "Commands:") || !strings.Contains(stdout, "version [--json]") {
		t.Errorf("faithif help: exit %d, %q", code, stdout)
	}
	code, _, stderr := runCmd(t, "help", "frob")
	if want := "faithif: help: unknown command \"frob\"\nRun 'faithif help' for the commands.\n"; code != exitUsage || stderr != want {
		t.Errorf("faithif help frob: exit %d, %q; want %q", code, stderr, want)
	}
}
